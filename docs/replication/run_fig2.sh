#!/usr/bin/env bash
# Fig. 2 of the replication suite: the four lr x weight-decay panels (SGD, SGDW, Adam, AdamW), 72 cells each
# (PANELS="..." for others, e.g. run_fig2_normonly.sh).
# Resumable: re-running this script skips finished cells and continues interrupted ones from their last.ckpt.
#   mkdir -p runs/replication && nohup bash docs/replication/run_fig2.sh > runs/replication/fig2.log 2>&1 &
# JOBS=2 (both cores free) halves the wall time; the default 1 leaves one core for other work. One thread per cell.
# Run from the repository root with the venv active (the `wdlab` command on PATH).
set -u
cd "$(dirname "$0")/../.."
JOBS="${JOBS:-1}"
export OMP_NUM_THREADS=1
for panel in ${PANELS:-sgd sgdw adam adamw}; do
  echo "== $(date -Is) fig2_$panel (jobs $JOBS)"
  # A fresh checkout has no runs/: start from the study saved by progress.sh (the cells done so far).
  if [ ! -f "runs/replication/fig2_$panel/sweep.db" ] && [ -f "docs/replication/fig2_$panel/sweep.db" ]; then
    mkdir -p "runs/replication/fig2_$panel"
    cp "docs/replication/fig2_$panel/sweep.db" "runs/replication/fig2_$panel/sweep.db"
  fi
  wdlab sweep --config "configs/replication/fig2_$panel.yaml" --out "runs/replication/fig2_$panel" \
    --jobs "$JOBS" --no_report
  echo "== $(date -Is) fig2_$panel exit $?"
  mkdir -p "docs/replication/fig2_$panel"
  [ -f "runs/replication/fig2_$panel/results.csv" ] && cp "runs/replication/fig2_$panel/results.csv" "docs/replication/fig2_$panel/results.csv"
done
echo "== $(date -Is) fig2 done"

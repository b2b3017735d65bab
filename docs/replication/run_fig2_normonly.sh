#!/usr/bin/env bash
# Fig. 2, the decoupled panels' second variant (biases and BatchNorm weights not decayed), after the four main panels.
# Resumable like run_fig2.sh:  nohup bash docs/replication/run_fig2_normonly.sh > runs/replication/fig2_normonly.log 2>&1 &
set -u
cd "$(dirname "$0")/../.."
JOBS="${JOBS:-1}"
export OMP_NUM_THREADS=1
for panel in sgdw_normonly adamw_normonly; do
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
echo "== $(date -Is) fig2_normonly done"

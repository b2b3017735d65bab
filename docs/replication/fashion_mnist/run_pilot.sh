#!/usr/bin/env bash
# Round 2 pilot, stage 1 (docs/replication/PREREGISTRATION.md, section 3 and its deviations): candidates A-E x SGDW, AdamW,
# 8 cells each (decay 0, 2^-10, 2^-8, 2^-6 x seeds 900-901). Resumable: re-running skips finished cells.
#   JOBS=2 nohup bash docs/replication/fashion_mnist/run_pilot.sh > runs/replication/fashion_mnist/pilot.log 2>&1 &
# Then: python docs/replication/fashion_mnist/pilot.py  (the pre-registered rule, applied to the saved results.csv)
# SAVE_ONLY=1 bash docs/replication/fashion_mnist/run_pilot.sh  saves the cells done so far (results.csv and the study,
# which a fresh checkout resumes from) without running anything: e.g. before a session ends.
set -u
cd "$(dirname "$0")/../../.."
JOBS="${JOBS:-2}"
export OMP_NUM_THREADS=1
RUNS=runs/replication/fashion_mnist
SAVED=docs/replication/fashion_mnist
mkdir -p "$RUNS"
declare -A OPTIONS=(
  [A]=""
  [B]="--data.init_args.train_subset 500 --trainer.max_epochs 100 --trainer.check_val_every_n_epoch 100"
  [C]="--model.net.init_args.base_width 8 --trainer.max_epochs 100 --trainer.check_val_every_n_epoch 100"
  # D and E: added by the deviation of 2026-12-07 (PREREGISTRATION.md), 800 steps at width 8
  [D]="--model.net.init_args.base_width 8 --data.init_args.train_subset 500 --trainer.max_epochs 100 --trainer.check_val_every_n_epoch 100"
  [E]="--model.net.init_args.base_width 8 --data.init_args.train_subset 250 --trainer.max_epochs 200 --trainer.check_val_every_n_epoch 200"
)
for candidate in ${CANDIDATES:-D E A B C}; do
  for optimizer in sgdw adamw; do
    part="pilot_${candidate}_${optimizer}"
    # a fresh checkout has no runs/: start from the study saved so far
    if [ ! -f "$RUNS/$part/sweep.db" ] && [ -f "$SAVED/$part/sweep.db" ]; then
      mkdir -p "$RUNS/$part" && cp "$SAVED/$part/sweep.db" "$RUNS/$part/sweep.db"
    fi
    if [ -n "${SAVE_ONLY:-}" ]; then
      [ -f "$RUNS/$part/sweep.db" ] || continue
      # shellcheck disable=SC2086
      wdlab sweep --config "configs/replication/fashion_mnist/pilot_${optimizer}.yaml" --out "$RUNS/$part" \
        --jobs "$JOBS" --no_report --results_only ${OPTIONS[$candidate]}
    else
      echo "== $(date -Is) $part (jobs $JOBS)"
      # shellcheck disable=SC2086
      wdlab sweep --config "configs/replication/fashion_mnist/pilot_${optimizer}.yaml" --out "$RUNS/$part" \
        --jobs "$JOBS" --no_report ${OPTIONS[$candidate]}
      echo "== $(date -Is) $part exit $?"
    fi
    mkdir -p "$SAVED/$part"
    cp "$RUNS/$part/results.csv" "$SAVED/$part/" 2>/dev/null
    # SQLite's online backup: a consistent copy even while a worker writes to the study
    python -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))' \
      "$RUNS/$part/sweep.db" "$SAVED/$part/sweep.db" 2>/dev/null
  done
done
echo "== $(date -Is) pilot stage 1 done"

#!/usr/bin/env bash
# Round 2 pilot (docs/replication/PREREGISTRATION.md, section 3 and its deviations). Resumable: re-running skips
# finished cells. Three steps, each a mode of this script:
#   stage 1 (the cell): candidates A-I x SGDW, AdamW, 8 cells each (decay 0, 2^-10, 2^-8, 2^-6 x seeds 900-901)
#     JOBS=2 nohup bash docs/replication/fashion_mnist/run_pilot.sh > runs/replication/fashion_mnist/pilot.log 2>&1 &
#   criterion (c), on otherwise idle cores: each candidate's lambda = 2^-8 cells of SGDW and AdamW, seed 900, two at a time
#     MODE=timing bash docs/replication/fashion_mnist/run_pilot.sh
#   then: python docs/replication/fashion_mnist/pilot.py  (the rule, applied to the saved results.csv: the cell)
#   stage 2 (where the grids go), with the chosen candidate: SGD, SGDW, Adam, AdamW at three lrs, seed 900
#     MODE=stage2 CANDIDATE=X JOBS=2 nohup bash docs/replication/fashion_mnist/run_pilot.sh > ... &
#   then: python docs/replication/fashion_mnist/pilot.py --stage 2  (the rule: alpha* and lambda*, placement.csv)
# SAVE_ONLY=1 (with any mode) saves the cells done so far (results.csv and the study, which a fresh checkout resumes
# from) without running anything: e.g. before a session ends.
set -u
cd "$(dirname "$0")/../../.."
command -v wdlab > /dev/null || { echo "run_pilot.sh: no wdlab on PATH: activate the environment wdlab is installed in" >&2; exit 2; }
JOBS="${JOBS:-2}"
MODE="${MODE:-stage1}"
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
  # F and G: D and E without augmentation (the deviation of 2026-12-07, after D and E)
  [F]="--model.net.init_args.base_width 8 --data.init_args.train_subset 500 --trainer.max_epochs 100 --trainer.check_val_every_n_epoch 100 --data.init_args.augment false"
  [G]="--model.net.init_args.base_width 8 --data.init_args.train_subset 250 --trainer.max_epochs 200 --trainer.check_val_every_n_epoch 200 --data.init_args.augment false"
  # H and I: 800 steps at width 8 without augmentation on more images (the deviation of 2026-12-07, third session)
  [H]="--model.net.init_args.base_width 8 --data.init_args.train_subset 1000 --trainer.max_epochs 50 --trainer.check_val_every_n_epoch 50 --data.init_args.augment false"
  [I]="--model.net.init_args.base_width 8 --data.init_args.train_subset 2000 --trainer.max_epochs 25 --trainer.check_val_every_n_epoch 25 --data.init_args.augment false"
)
# stage 2: three lrs two octaves apart around stage 1's, decays of section 3 (the L2 panels one octave further)
declare -A STAGE2=(
  [sgd]="--grid model.optimizer.lr=2**-5,2**-3,2**-1 --grid model.optimizer.weight_decay=0,2**-12,2**-10,2**-8,2**-6,2**-4"
  [sgdw]="--grid model.optimizer.lr=2**-5,2**-3,2**-1 --grid model.optimizer.weight_decay=0,2**-12,2**-10,2**-8,2**-6"
  [adam]="--grid model.optimizer.lr=2**-10,2**-8,2**-6 --grid model.optimizer.weight_decay=0,2**-12,2**-10,2**-8,2**-6,2**-4"
  [adamw]="--grid model.optimizer.lr=2**-10,2**-8,2**-6 --grid model.optimizer.weight_decay=0,2**-12,2**-10,2**-8,2**-6"
)

# run_part PART JOBS ARGS...: one resumable sweep into $RUNS/PART, its results.csv and study saved under $SAVED/PART
run_part() {
  local part="$1" jobs="$2"
  shift 2
  # a fresh checkout has no runs/: start from the study saved so far
  if [ ! -f "$RUNS/$part/sweep.db" ] && [ -f "$SAVED/$part/sweep.db" ]; then
    mkdir -p "$RUNS/$part" && cp "$SAVED/$part/sweep.db" "$RUNS/$part/sweep.db"
  fi
  if [ -n "${SAVE_ONLY:-}" ]; then
    [ -f "$RUNS/$part/sweep.db" ] || return 0
    wdlab sweep --out "$RUNS/$part" --jobs "$jobs" --no_report --results_only "$@"
  else
    echo "== $(date -Is) $part (jobs $jobs)"
    wdlab sweep --out "$RUNS/$part" --jobs "$jobs" --no_report "$@"
    local code=$?
    echo "== $(date -Is) $part exit $code"
  fi
  mkdir -p "$SAVED/$part"
  cp "$RUNS/$part/results.csv" "$SAVED/$part/" 2>/dev/null
  # SQLite's online backup: a consistent copy even while a worker writes to the study
  python -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))' \
    "$RUNS/$part/sweep.db" "$SAVED/$part/sweep.db" 2>/dev/null
}

config() { echo "configs/replication/fashion_mnist/pilot_$1.yaml"; }  # sgd and adam share their family's file

case "$MODE" in
  stage1)
    # B and C are not affordable (the deviation of 2026-12-07, third session): not run by default
    for candidate in ${CANDIDATES:-D E F G H I A}; do
      for optimizer in sgdw adamw; do
        # shellcheck disable=SC2086
        run_part "pilot_${candidate}_${optimizer}" "$JOBS" --config "$(config "$optimizer")" ${OPTIONS[$candidate]}
      done
    done
    echo "== $(date -Is) pilot stage 1 done" ;;
  timing)
    # two cells at a time, one per optimizer, as the Fig. 2 panels would run; their wall_s decides (c). D-G
    # run two cells per slot (the second is what a cell costs in a long sweep: the imports are paid once per
    # slot); A, B and C one (PREREGISTRATION.md, deviation of 2026-12-07)
    declare -A TIMING_SEEDS=([A]=900-900 [B]=900-900 [C]=900-900 [D]=900-901 [E]=900-901 [F]=900-901 [G]=900-901 [H]=900-901 [I]=900-901)
    for candidate in ${CANDIDATES:-D E F G H I A B C}; do
      for optimizer in sgdw adamw; do
        # shellcheck disable=SC2086
        run_part "timing_${candidate}_${optimizer}" 1 --config "$(config "$optimizer")" ${OPTIONS[$candidate]} \
          --grid "model.optimizer.weight_decay=2**-8" --seeds "${TIMING_SEEDS[$candidate]}" &
      done
      wait
    done
    echo "== $(date -Is) pilot timing done" ;;
  stage2)
    candidate="${CANDIDATE:?MODE=stage2 needs CANDIDATE=<the candidate pilot.py chose>}"
    for optimizer in sgdw adamw sgd adam; do
      family="${optimizer%w}w"
      # shellcheck disable=SC2086
      run_part "pilot2_${optimizer}" "$JOBS" --config "$(config "$family")" ${OPTIONS[$candidate]} \
        --model.optimizer.name "$optimizer" ${STAGE2[$optimizer]} --seeds 900-900
    done
    echo "== $(date -Is) pilot stage 2 done" ;;
  *) echo "run_pilot.sh: MODE=$MODE: use stage1, timing or stage2" >&2; exit 2 ;;
esac

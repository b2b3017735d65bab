#!/usr/bin/env bash
# The whole replication suite in one command. Resumable: every
# step is a `wdlab sweep`, and re-running this script skips finished cells. The later parts take their settings from
# Fig. 2's results by the fixed rule of docs/replication/best_cell.py (best mean test error over seeds), never by
# looking at their own outcome.
#   mkdir -p runs/replication && nohup bash docs/replication/run_suite.sh > runs/replication/suite.log 2>&1 &      # JOBS=2 with both cores free
set -eu
cd "$(dirname "$0")/../.."
JOBS="${JOBS:-1}"
export OMP_NUM_THREADS=1
# A fresh checkout has no runs/: each sweep starts from the study progress.sh saved (the cells done so far).
sweep() {
  local out="" prev=""
  for a in "$@"; do [ "$prev" = "--out" ] && out="$a"; prev="$a"; done
  local saved="docs/replication/$(basename "$out")/sweep.db"
  if [ -n "$out" ] && [ ! -f "$out/sweep.db" ] && [ -f "$saved" ]; then mkdir -p "$out" && cp "$saved" "$out/sweep.db"; fi
  wdlab sweep --jobs "$JOBS" --no_report "$@"
}
best() { python docs/replication/best_cell.py "$@"; }

# Fig. 2: the four panels (72 cells each), then their per-cell CSVs under docs/replication/fig2_X/
bash docs/replication/run_fig2.sh
for p in sgd sgdw adam adamw; do
  [ -f "runs/replication/fig2_$p/results.csv" ] || { echo "fig2_$p did not finish; re-run"; exit 1; }
done

# The parts after Fig. 2 are two independent lanes: with JOBS=2 they run side by side (one core each, no
# core idle while a small sweep finishes its last cell), with JOBS=1 one after the other.
figs_1_3_and_4() {
  # Figs. 1/3: Adam and AdamW at their own best cells, 8 seeds, test error every 5 epochs
  for p in adam adamw; do
    read -r lr wd < <(best "docs/replication/fig2_$p/results.csv")
    sweep --config "configs/replication/fig13_$p.yaml" --out "runs/replication/fig13_$p" \
      --grid "model.optimizer.lr=$lr" --grid "model.optimizer.weight_decay=$wd"
  done
  # Fig. 4: warm restarts vs cosine runs of the period lengths, lr and lambda_norm from the best Fig. 2 cell
  for pair in "adamwr adamw" "sgdwr sgdw"; do
    set -- $pair
    read -r lr wdn < <(best "docs/replication/fig2_$2/results.csv" --lambda_norm 50 --num_train 1000 --batch 64)
    sweep --config "configs/replication/fig4_$1.yaml" --out "runs/replication/fig4_$1" \
      --grid "model.optimizer.lr=$lr" --grid "model.optimizer.weight_decay_norm=$wdn"
    sweep --config "configs/replication/fig4_$2_cosine.yaml" --out "runs/replication/fig4_$2_cosine" \
      --grid "model.optimizer.lr=$lr" --grid "model.optimizer.weight_decay_norm=$wdn"
  done
}
appendix_b1() {
  # Appendix B.1: AdamW at T = 25 and 4T = 100 epochs over a raw-lambda row, at the best AdamW lr
  read -r lr _ < <(best docs/replication/fig2_adamw/results.csv)
  sweep --config configs/replication/b1_adamw.yaml --out runs/replication/b1_adamw --grid "model.optimizer.lr=$lr"
  # and at T = 50 epochs (the Fig. 2 length): the T = 25 row underfits (decay gains 0.6 points there), so it cannot place
  # an optimum; summarize.py uses the run lengths where decay gains >= 3 points
  sweep --config configs/replication/b1_adamw.yaml --out runs/replication/b1_adamw_t50 --grid "model.optimizer.lr=$lr" \
    --grid trainer.max_epochs=50
  # and at 4 x 50 = 200 epochs: one doubling of T (50 -> 100) could not tell lambda* ~ T^-1/2 from a fixed lambda
  sweep --config configs/replication/b1_adamw.yaml --out runs/replication/b1_adamw_t200 --grid "model.optimizer.lr=$lr" \
    --grid trainer.max_epochs=200
}
if [ "$JOBS" -ge 2 ]; then
  (JOBS=1; figs_1_3_and_4) & (JOBS=1; appendix_b1) & wait
else
  figs_1_3_and_4; appendix_b1
fi
for d in fig13_adam fig13_adamw fig4_adamwr fig4_adamw_cosine fig4_sgdwr fig4_sgdw_cosine b1_adamw b1_adamw_t50 b1_adamw_t200; do
  mkdir -p "docs/replication/$d" && cp "runs/replication/$d/results.csv" "docs/replication/$d/results.csv"
done

# Beyond the 5 h budget: Fig. 2's decoupled panels with biases and BatchNorm weights exempt
bash docs/replication/run_fig2_normonly.sh

# Reports (slopes with bootstrap intervals, basins, verdicts)
wdlab report runs/replication/fig2_sgd runs/replication/fig2_sgdw runs/replication/fig2_adam runs/replication/fig2_adamw \
  --out docs/replication/fig2
wdlab report runs/replication/fig2_sgd runs/replication/fig2_sgdw runs/replication/fig2_adam runs/replication/fig2_adamw \
  --out docs/replication/fig2/train_loss --metric final_train_loss
wdlab report runs/replication/fig2_sgdw_normonly runs/replication/fig2_adamw_normonly --out docs/replication/fig2_normonly
# Figs. 1/3, 4 and B.1: intervals over seeds, matched training loss, snapshot vs cosine, best lambda per run length
python docs/replication/summarize.py --runs runs/replication --out docs/replication
echo "suite done $(date -Is)"

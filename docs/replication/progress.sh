#!/usr/bin/env bash
# Progress of the Fig. 2 sweeps while they run: for every panel that has started, write its results.csv from the
# study as it stands (`wdlab sweep ... --results_only`: starts nothing, safe next to the running sweep), copy it to
# docs/replication/fig2_X/results.csv, and count the cells by state.
#   bash docs/replication/progress.sh
# Do not edit configs/replication/fig2_*.yaml while their sweeps are unfinished: the sweep fingerprints the config
# files and refuses to resume with changed ones (and edits to the component files would silently change later cells).
cd "$(dirname "$0")/../.."
command -v wdlab > /dev/null || { echo "progress.sh: wdlab is not on PATH (source the venv first)"; exit 1; }
export OMP_NUM_THREADS=1
for panel in sgd sgdw adam adamw sgdw_normonly adamw_normonly; do
  out="runs/replication/fig2_$panel"
  [ -f "$out/sweep.db" ] || continue
  wdlab sweep --config "configs/replication/fig2_$panel.yaml" --out "$out" --jobs 1 --no_report --results_only \
    2>/tmp/progress_$panel.err || { echo "fig2_$panel: --results_only failed: $(tail -1 /tmp/progress_$panel.err)"; continue; }
  mkdir -p "docs/replication/fig2_$panel"
  cp "$out/results.csv" "docs/replication/fig2_$panel/results.csv"
  # The study itself (which cells are done, with their results), consistent even while the sweep writes:
  # a fresh checkout has no runs/, and run_fig2.sh starts from this copy instead of from nothing.
  python3 -c "import sqlite3, sys; s = sqlite3.connect(sys.argv[1]); d = sqlite3.connect(sys.argv[2]); s.backup(d); d.close()" \
    "$out/sweep.db" "docs/replication/fig2_$panel/sweep.db"
  echo "fig2_$panel: $(awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "state") s = i; next} {n[$s]++}
    END {for (k in n) printf "%s %d  ", k, n[k]}' "$out/results.csv")"
done

#!/usr/bin/env bash
# Progress of the replication sweeps while they run, saved so that a later session (a fresh checkout has no runs/)
# continues from the cells done so far:
#   bash docs/replication/progress.sh
# For every part that has started: its study (sweep.db, an SQLite backup, consistent while the sweep writes) goes
# to docs/replication/<part>/sweep.db, where run_fig2.sh and run_suite.sh start from it. Fig. 2 panels also get
# their results.csv written from the study as it stands (`wdlab sweep ... --results_only`: starts nothing; rows of
# unfinished cells say pending / running); the other parts' sweeps take their lr and decay on the command line
# (run_suite.sh), so their results.csv is copied once the sweep has written it.
# Do not edit configs/replication/*.yaml while their sweeps are unfinished: the sweep fingerprints the config
# files and refuses to resume with changed ones (and edits to the component files would silently change later cells).
cd "$(dirname "$0")/../.."
command -v wdlab > /dev/null || { echo "progress.sh: wdlab is not on PATH (source the venv first)"; exit 1; }
export OMP_NUM_THREADS=1
for part in fig2_sgd fig2_sgdw fig2_adam fig2_adamw fig13_adam fig13_adamw fig4_adamwr fig4_adamw_cosine fig4_sgdwr \
    fig4_sgdw_cosine b1_adamw b1_adamw_t50 b1_adamw_t200 fig2_sgdw_normonly fig2_adamw_normonly; do
  out="runs/replication/$part"
  [ -f "$out/sweep.db" ] || continue
  mkdir -p "docs/replication/$part"
  if [[ $part == fig2_* ]]; then
    wdlab sweep --config "configs/replication/$part.yaml" --out "$out" --jobs 1 --no_report --results_only \
      2>"/tmp/progress_$part.err" || echo "$part: --results_only failed: $(tail -1 "/tmp/progress_$part.err")"
  fi
  python3 -c "import sqlite3, sys; s = sqlite3.connect(sys.argv[1]); d = sqlite3.connect(sys.argv[2]); s.backup(d); d.close()" \
    "$out/sweep.db" "docs/replication/$part/sweep.db"
  if [ -f "$out/results.csv" ]; then
    cp "$out/results.csv" "docs/replication/$part/results.csv"
    echo "$part: $(awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "state") s = i; next} {n[$s]++}
      END {for (k in n) printf "%s %d  ", k, n[k]}' "$out/results.csv")"
  else
    echo "$part: study saved (results.csv not written yet)"
  fi
done

#!/usr/bin/env bash
# Per-cell CPU seconds from cpu_sampler.sh's log (last sample of each cell's process; 10 s resolution, so a cell's
# true figure is up to ~10 s higher), with the machine's 1-minute load average at that time.
#   bash docs/replication/cell_cpu.sh [runs/replication/cpu_samples.log]
awk '$1=="load" {load=$3; next} NF==5 {cpu[$5]=$4; wall[$5]=$3; ld[$5]=load}
     END {for (c in cpu) printf "%-48s wall>=%4d s  cpu>=%4d s  load %s\n", c, wall[c], cpu[c], ld[c]}' \
  "${1:-runs/replication/cpu_samples.log}" | sort

#!/usr/bin/env bash
# Samples the CPU time of every running Fig. 2 cell every 10 s (the last sample of a pid ~ that cell's core-seconds,
# which on an idle machine is its wall time with one thread). It stops when process PID (the driver) has ended.
#   mkdir -p runs/replication && nohup bash docs/replication/cpu_sampler.sh PID >> runs/replication/cpu_samples.log 2>&1 &
pid="${1:?usage: cpu_sampler.sh PID-of-the-driver}"
while kill -0 "$pid" 2>/dev/null; do
  ps -eo pid,etimes,times,args | awk -v t="$(date +%s)" '/wdlab fit --config configs\/replication\/fig2/ && !/awk/ {
    name=""; for (i=1;i<=NF;i++) if ($i=="--trainer.logger.init_args.name") name=$(i+1);
    print t, $1, $2, $3, name }'
  echo "load $(date +%s) $(cut -d' ' -f1-3 /proc/loadavg)"
  sleep 10
done

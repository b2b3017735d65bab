#!/usr/bin/env bash
# Fig. 2, the decoupled panels' second variant (biases and BatchNorm weights not decayed), after the four main panels.
# Resumable like run_fig2.sh, which it runs for these two panels:
#   mkdir -p runs/replication && nohup bash docs/replication/run_fig2_normonly.sh > runs/replication/fig2_normonly.log 2>&1 &
PANELS="sgdw_normonly adamw_normonly" exec bash "$(dirname "$0")/run_fig2.sh"

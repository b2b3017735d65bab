#!/usr/bin/env bash
# The first-GPU check: everything that can only be measured on a CUDA device, in one command that
# fits a short device lease (<= 8 minutes on one H100/H200), ending in one summary table ready to
# paste into docs/PERFORMANCE.md.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # default OUT_DIR: $OUT if set, else runs/gpu_check
#
# On CUDA it runs: the GPU-marked tests, benchmarks/throughput.py on Fig. 2's network (Shake-Shake
# 26 2x64d), benchmarks/optimizer_step.py --device cuda, and two epochs of a Fig. 2 cell on the
# built-in data with and without model.compile. Without CUDA it says so, skips those, and runs
# a one-epoch CPU version of the Fig. 2 cell, so the script itself is checked everywhere (tests/
# test_benchmarks.py runs this CPU mode). Each step's full output is in OUT_DIR/<step>.log; the
# table is also written to OUT_DIR/summary.md. Exit status: 0 when no step failed, else 1.
#
# wdlab need not be installed: the repository root goes on PYTHONPATH. Wheels in .whl/ (e.g.
# jsonargparse, missing from the GPU image) are installed into a private folder first.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-runs/gpu_check}}"
mkdir -p "$out"
python="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/wdlab-site .whl/*.whl \
        || { echo "gpu_check: installing .whl/*.whl failed" >&2; exit 1; }
    export PYTHONPATH="$PYTHONPATH:/tmp/wdlab-site"
fi
config="${WDLAB_GPU_CHECK_CONFIG:-configs/replication/fig2_adamw.yaml}"  # the replication suite's Fig. 2 cell
cuda="$("$python" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)"
device="$("$python" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no CUDA)")' 2>/dev/null)"

rows=()
failed=0
# step NAME FIGURE_PATTERN COMMAND...: run it, time it, keep the last output line matching the pattern.
step() {
    local name=$1 pattern=$2; shift 2
    local start status figure
    start=$SECONDS
    timeout 300 "$@" > "$out/$name.log" 2>&1
    local rc=$?
    if [ "$rc" -eq 0 ]; then status=ok; else status="FAILED (exit $rc, see $out/$name.log)"; failed=1; fi
    figure="$(grep -E -- "$pattern" "$out/$name.log" | tail -1 | tr -s ' ' | cut -c1-110)"
    rows+=("| $name | $status | $((SECONDS - start)) | ${figure:--} |")
}
skip() { rows+=("| $1 | skipped: needs CUDA | - | - |"); }

# fit_cell NAME ACCELERATOR EPOCHS: the command of one Fig. 2 cell with its own run directory (append options)
fit_cell() {
    cell=("$python" -m wdlab fit --config "$config" --trainer.accelerator "$2" --trainer.max_epochs "$3"
          --trainer.enable_progress_bar false --trainer.logger.init_args.save_dir "$out/runs"
          --trainer.logger.init_args.name "$1" --snapshots.save false)
}

if [ "$cuda" = 1 ]; then
    step gpu_tests "passed|failed" "$python" -m pytest -q -m gpu -p no:cacheprovider \
        tests/training/test_fastpaths.py tests/models/test_models.py tests/experiments/test_ensemble.py
    step throughput "^shake26" "$python" benchmarks/throughput.py --device cuda --model shake26-2x64d \
        --epochs 2 --repeats 3 --no-progress-bar
    step optimizer_step "vs" "$python" benchmarks/optimizer_step.py --device cuda --rounds 30
    fit_cell fig2_cell gpu 2 && step fig2_cell "test/err +[0-9]" "${cell[@]}"
    fit_cell fig2_cell_compiled gpu 2 && step fig2_cell_compiled "test/err +[0-9]" "${cell[@]}" --model.compile true
else
    echo "gpu_check: no CUDA device: the GPU checks are skipped; running the CPU version of the Fig. 2 cell" >&2
    for name in gpu_tests throughput optimizer_step; do skip "$name"; done
    fit_cell fig2_cell_cpu cpu 1 && step fig2_cell_cpu "test/err +[0-9]" "${cell[@]}"
    skip fig2_cell_compiled
fi

{
    echo "gpu_check on $device ($(date -u +%Y-%m-%d), torch $("$python" -c 'import torch; print(torch.__version__)'))"
    echo
    echo "| check | result | seconds | figure (last matching line of its log) |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} | tee "$out/summary.md"
exit "$failed"

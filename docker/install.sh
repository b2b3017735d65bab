#!/usr/bin/env bash
# How the Docker image installs wdlab (docker/Dockerfile runs exactly this), kept in one script so that
# tests/test_docker.py can run the same steps in a clean virtual environment on machines without Docker.
#
#   bash docker/install.sh VENV [SRC]      # SRC: the wdlab source tree (default: the current directory)
#
# A virtual environment, not the system Python: Ubuntu 24.04's Python refuses pip installs (PEP 668),
# and a venv keeps the image's Python packages in one place. torch's wheels bring their own CUDA
# runtime, cuDNN and NCCL, so the image needs nothing from the CUDA toolkit beyond the driver.
set -euo pipefail

venv="${1:?usage: install.sh VENV [SRC]}"
src="${2:-.}"
constraints="$src/docker/constraints.txt"
[[ -f "$constraints" ]] || { echo "install.sh: $constraints is missing; run from a wdlab checkout" >&2; exit 2; }

# The Dockerfile passes every PIP_* build argument, set or not; pip would read an empty one as a value.
for name in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_NO_INDEX PIP_TRUSTED_HOST; do
    if [[ -z "${!name:-}" ]]; then unset "$name"; fi
done

python3 -m venv "$venv"
# A regular (non-editable) install: the image needs no source tree. The postgres extra: multi-machine sweeps
# (--storage postgresql://...) need its driver, and the image's user cannot pip install into $venv later.
"$venv/bin/python" -m pip install --constraint "$constraints" "$src[postgres]"
"$venv/bin/wdlab" --version

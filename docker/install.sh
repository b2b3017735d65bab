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

python3 -m venv "$venv"
"$venv/bin/python" -m pip install "$src"   # a regular (non-editable) install: the image needs no source tree
"$venv/bin/wdlab" --version

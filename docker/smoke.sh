#!/usr/bin/env bash
# Build the image and run the README's Docker path on CPU, step by step; exit 1 at the first failure,
# naming the step. tests/test_docker.py (marker `docker`) runs it; docs/DOCKER.md has a recorded run.
#
#   BASE_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04 docker/smoke.sh      # the real base (needs a registry)
#   BASE_IMAGE=localhost/wdlab-base:bookworm docker/smoke.sh               # a local one (docs/DOCKER.md)
#
# Environment:
#   BASE_IMAGE            the base image (required: the script never pulls one on its own)
#   WDLAB_ENGINE          docker or podman (default: docker if its daemon answers, else podman)
#   WDLAB_WHEELHOUSE      a folder of wheels (docs/DOCKER.md: pip download); served on 127.0.0.1 to the build,
#                         whose pip then installs from it only (--network host for this build alone)
#   WDLAB_PIP_INDEX_URL   the build's package index instead of PyPI (a mirror, or a CPU-only torch index)
#   WDLAB_BUILD_NETWORK   the build's network (e.g. host) when the default one cannot reach the index
#   WDLAB_WHEELHOUSE_PORT the port it is served on (default 38517)
#   WDLAB_SMOKE_TAG       the image name (default wdlab-smoke); WDLAB_SMOKE_DIR the work folder (default: new)
set -euo pipefail
cd "$(dirname "$0")/.."

step="setup"
started=$SECONDS
reported=""
fail() { echo "smoke: FAILED at step '$step': $*" >&2; reported=1; exit 1; }
# A command that fails under set -e outside fail(): still name the step.
on_exit() { local status=$?; cleanup; [[ $status -eq 0 || -n "$reported" ]] || echo "smoke: FAILED at step '$step' (exit $status)" >&2; }
trap on_exit EXIT
begin() { step="$1"; step_started=$SECONDS; echo "smoke: [$step] $2"; }
done_step() { echo "smoke: [$step] ok ($((SECONDS - step_started)) s)${1:+: $1}"; }

tag="${WDLAB_SMOKE_TAG:-wdlab-smoke}"
work="${WDLAB_SMOKE_DIR:-$(mktemp -d "${TMPDIR:-/var/tmp}/wdlab-smoke.XXXXXX")}"
me="$(id -u):$(id -g)"
other="4321:4321"  # a uid:gid neither the image nor the host knows
containers=()
server_pid=""
engine=""
cleanup() {
    [[ -n "$engine" ]] || return 0
    for name in "${containers[@]}"; do "$engine" rm -f "$name" >/dev/null 2>&1 || true; done
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; fi
}

# ------------------------------------------------------------------------------------------------ engine
begin engine "which container engine"
if [[ -z "${BASE_IMAGE:-}" ]]; then
    fail "BASE_IMAGE is not set; name a base image, e.g. BASE_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04 (docs/DOCKER.md makes a local one)"
fi
engine="${WDLAB_ENGINE:-}"
if [[ -z "$engine" ]]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
    elif command -v podman >/dev/null; then engine=podman
    else fail "no container engine: install Docker (with BuildKit) or podman, or set WDLAB_ENGINE"; fi
fi
# The Dockerfile's RUN --mount needs BuildKit; Docker 20.10's legacy builder refuses it, so ask for it
# (Docker 23+ without the buildx plugin then says that plugin is missing instead of failing later).
if [[ "$engine" == docker ]]; then export DOCKER_BUILDKIT=1; fi
"$engine" image inspect "$BASE_IMAGE" >/dev/null 2>&1 || "$engine" pull "$BASE_IMAGE" >/dev/null \
    || fail "base image $BASE_IMAGE is neither present nor pullable"
done_step "$("$engine" --version), base $BASE_IMAGE"

# ------------------------------------------------------------------------------------------------- build
# What pip installs from the bind-mounted source, hashed: older buildah would reuse a stale install layer.
# (README.md is only the package's description.)
source_hash=$(find pyproject.toml wdlab docker/install.sh docker/constraints.txt -type f \
    ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "WDLAB_SOURCE=$source_hash")
route="the index pip is configured with inside the build (PyPI by default)"
if [[ -n "${WDLAB_WHEELHOUSE:-}" ]]; then
    [[ -d "$WDLAB_WHEELHOUSE" ]] || { step=build; fail "WDLAB_WHEELHOUSE=$WDLAB_WHEELHOUSE is not a folder"; }
    # A fixed port: the address is a build argument, and a new one would void the install layer's cache.
    port="${WDLAB_WHEELHOUSE_PORT:-38517}"
    if python3 -c "import socket, sys; sys.exit(socket.socket().connect_ex(('127.0.0.1', $port)) != 0)"; then
        step=build; fail "port $port on 127.0.0.1 is taken; set WDLAB_WHEELHOUSE_PORT to a free one"
    fi
    python3 -m http.server --bind 127.0.0.1 --directory "$WDLAB_WHEELHOUSE" "$port" >/dev/null 2>&1 &
    server_pid=$!
    build_args+=(--network host --build-arg "PIP_NO_INDEX=1" --build-arg "PIP_FIND_LINKS=http://127.0.0.1:$port/")
    route="the wheelhouse $WDLAB_WHEELHOUSE ($(find "$WDLAB_WHEELHOUSE" -name '*.whl' | wc -l) wheels), --no-index"
elif [[ -n "${WDLAB_PIP_INDEX_URL:-}" ]]; then
    build_args+=(--build-arg "PIP_INDEX_URL=$WDLAB_PIP_INDEX_URL")
    route="the index $WDLAB_PIP_INDEX_URL"
fi
if [[ -n "${WDLAB_BUILD_NETWORK:-}" && -z "${WDLAB_WHEELHOUSE:-}" ]]; then build_args+=(--network "$WDLAB_BUILD_NETWORK"); fi

begin build "docker build -f docker/Dockerfile -t $tag . (packages from $route)"
"$engine" build -f docker/Dockerfile "${build_args[@]}" -t "$tag" . > "$work/build.log" 2>&1 \
    || { tail -n 30 "$work/build.log" >&2; fail "the build failed (log: $work/build.log)"; }
size=$("$engine" image inspect --format '{{.Size}}' "$tag")
build_seconds=$((SECONDS - step_started))
done_step "image $tag, $((size / 1000000)) MB"

begin build-uid "the same build with --build-arg UID=\"\$(id -u)\" --build-arg GID=\"\$(id -g)\" ($me)"
"$engine" build -f docker/Dockerfile "${build_args[@]}" --build-arg "UID=$(id -u)" --build-arg "GID=$(id -g)" \
    -t "$tag-uid" . > "$work/build-uid.log" 2>&1 \
    || { tail -n 30 "$work/build-uid.log" >&2; fail "the build for $me failed (log: $work/build-uid.log)"; }
user=$("$engine" run --rm --entrypoint sh "$tag-uid" -c 'echo "$(id -u):$(id -g)"')
[[ "$user" == "$me" ]] || fail "the image built for $me runs as $user"
done_step "runs as $user"

# ----------------------------------------------------------------------------------------- the image itself
begin version "docker run --rm $tag --version"
version=$("$engine" run --rm "$tag" --version)
[[ "$version" == "wdlab "* ]] || fail "--version printed '$version'"
done_step "$version"

begin image "what the image holds: no build-time environment or sources, the postgres driver, the pinned versions"
# shellcheck disable=SC2016  # expanded inside the container
"$engine" run --rm --entrypoint sh "$tag" -c '
    [ -z "${DEBIAN_FRONTEND:-}" ] || { echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND is set"; exit 1; }
    for leftover in /src /root/.cache/pip; do [ ! -e "$leftover" ] || { echo "$leftover is in the image"; exit 1; }; done
    python -c "import psycopg, sqlalchemy; sqlalchemy.create_engine(\"postgresql+psycopg://u@h/d\")" \
        || { echo "no PostgreSQL driver"; exit 1; }
    [ -w "$HOME" ] || { echo "HOME=$HOME is not writable"; exit 1; }' \
    || fail "the image is not as built to be (see the line above)"
"$engine" run --rm --entrypoint python "$tag" -m pip freeze --exclude-editable > "$work/image-freeze.txt"
mismatched=$(python3 - "$work/image-freeze.txt" docker/constraints.txt <<'EOF'
import re, sys
def pins(path):
    lines = open(path).read().splitlines()
    return {re.sub(r"[-_.]+", "-", l.split("==")[0]).lower(): l.split("==")[1] for l in lines if "==" in l}
image, pinned = pins(sys.argv[1]), pins(sys.argv[2])
print(" ".join(f"{n}=={v}(pinned {pinned[n]})" for n, v in sorted(image.items()) if n in pinned and pinned[n] != v))
EOF
)
[[ -z "$mismatched" ]] || fail "versions differ from docker/constraints.txt: $mismatched"
done_step "$(grep -c '==' "$work/image-freeze.txt") packages, each at its docker/constraints.txt version"

# ---------------------------------------------------------------------------------- the README's path
cd "$work"
mkdir -p data runs
# The README's command, on CPU: no --gpus all (nor --ipc=host); $1: the image, then wdlab's arguments.
wdlab_run() {
    local image="$1"; shift
    "$engine" run --rm --init --stop-timeout 120 --user "$me" -v "$PWD/data:/workspace/data" \
        -v "$PWD/runs:/workspace/runs" "$image" "$@"
}
quickstart=(fit --config configs/quickstart.yaml --trainer.max_epochs 2 --trainer.enable_progress_bar false)
test_error() { grep -E '(^|[^a-z0-9_/])test/err[^a-z0-9_]' "$1" | grep -oE '[0-9]+\.[0-9]+' | head -n 1; }
owner_of() { stat -c %u:%g "$1"; }

begin quickstart "docker run ... --user \"\$(id -u):\$(id -g)\" $tag fit --config configs/quickstart.yaml (2 epochs) into runs/"
wdlab_run "$tag" "${quickstart[@]}" --trainer.logger.init_args.name full > full.log 2>&1 \
    || { tail -n 20 full.log >&2; fail "the run failed"; }
full_error=$(test_error full.log)
[[ -n "$full_error" ]] || { tail -n 20 full.log >&2; fail "no test/err in the output"; }
[[ -f runs/full/checkpoints/last.ckpt ]] || fail "no runs/full/checkpoints/last.ckpt"
done_step "test/err $full_error"

begin owner "the files written to the bind-mounted runs/ belong to the host user"
bad=$(find runs/full ! -user "$(id -u)" -print -quit)
[[ -z "$bad" ]] || fail "$bad is owned by $(owner_of "$bad"), not $me"
done_step "runs/full/checkpoints/last.ckpt owned by $(owner_of runs/full/checkpoints/last.ckpt)"

begin stop "SIGTERM mid-run (docker stop -t 120, the image built for $me, no --user): exit 0, last.ckpt, resume hint"
name="wdlab-smoke-stop-$$"
containers+=("$name")
"$engine" run -d --init --stop-timeout 120 --name "$name" -v "$PWD/data:/workspace/data" \
    -v "$PWD/runs:/workspace/runs" "$tag-uid" "${quickstart[@]}" --trainer.enable_progress_bar true \
    --trainer.logger.init_args.name stopped > /dev/null
for _ in $(seq 600); do  # until the first training batches have run (the progress bar shows "Epoch 0: ...")
    # grep without -q: an early exit would fail the pipe (pipefail) although it matched
    if "$engine" logs "$name" 2>&1 | grep -E 'Epoch 0: +[^0 ]' > /dev/null; then break; fi
    [[ "$("$engine" inspect --format '{{.State.Running}}' "$name")" == true ]] || break
    sleep 0.5
done
"$engine" stop -t 120 "$name" > /dev/null
exit_code=$("$engine" wait "$name" | tail -n 1)
"$engine" logs "$name" > stop.log 2>&1
[[ "$exit_code" == 0 ]] || { tail -n 20 stop.log >&2; fail "exit status $exit_code after SIGTERM, not 0"; }
hint=$(grep -oE 'stopped by SIGTERM at epoch [0-9]+, step [0-9]+' stop.log) \
    || { tail -n 20 stop.log >&2; fail "the run was not stopped mid-run (no 'stopped by SIGTERM at epoch ...')"; }
resume=$(grep -oE 'resume with: wdlab .*' stop.log | sed 's/^resume with: wdlab //')
[[ "$resume" == *"--ckpt_path last"* ]] || fail "no resume command in the output"
[[ -f runs/stopped/checkpoints/last.ckpt ]] || fail "no runs/stopped/checkpoints/last.ckpt after the stop"
done_step "$hint, exit 0, last.ckpt written"

begin resume "the printed resume command (the same one plus --ckpt_path last) ends at the same test error"
read -r -a resume_args <<< "$resume"
"$engine" run --rm --init --stop-timeout 120 -v "$PWD/data:/workspace/data" -v "$PWD/runs:/workspace/runs" \
    "$tag-uid" "${resume_args[@]}" > resume.log 2>&1 || { tail -n 20 resume.log >&2; fail "the resume failed"; }
resumed_error=$(test_error resume.log)
[[ "$resumed_error" == "$full_error" ]] \
    || fail "test/err $resumed_error after stop and resume, $full_error uninterrupted"
done_step "test/err $resumed_error, as the uninterrupted run"

begin other-user "docker run --user $other (no rebuild) writes its runs/ as $other"
mkdir -p other/data other/runs
chown "$other" other/runs 2>/dev/null || fail "cannot chown other/runs to $other (run as root, or rootless podman)"
"$engine" run --rm --init --user "$other" -v "$PWD/other/runs:/workspace/runs" "$tag" "${quickstart[@]}" \
    --trainer.max_epochs 1 --trainer.limit_train_batches 2 --trainer.limit_test_batches 1 > other.log 2>&1 \
    || { tail -n 20 other.log >&2; fail "the run as $other failed"; }
[[ "$(owner_of other/runs/quickstart/checkpoints/last.ckpt)" == "$other" ]] || fail "last.ckpt not owned by $other"
done_step "runs/quickstart/checkpoints/last.ckpt owned by $other"

begin unwritable "a runs/ the container user cannot write: one line naming the fix, exit 2, nothing written"
mkdir -p locked/runs && chmod 755 locked/runs  # owned by the host user: $other may not write there
set +e
"$engine" run --rm --init --user "$other" -v "$PWD/locked/runs:/workspace/runs" "$tag" "${quickstart[@]}" \
    > locked.out 2> locked.err
code=$?
set -e
[[ "$code" == 2 ]] || { tail -n 20 locked.err >&2; fail "exit status $code, not 2"; }
last_line=$(tail -n 1 locked.err)
[[ "$last_line" == "wdlab: error: cannot write the run folder"*"not writable"* ]] || fail "last line: $last_line"
grep -q Traceback locked.err && fail "a traceback"
[[ -z "$(ls -A locked/runs)" ]] || fail "locked/runs is not empty: $(ls -A locked/runs)"
done_step "$last_line"

cd - > /dev/null
rm -rf "$work" 2>/dev/null || true
echo "smoke: all steps passed in $((SECONDS - started)) s (build $build_seconds s, image $((size / 1000000)) MB, engine $engine, base $BASE_IMAGE)"

"""One cell of a sweep: what it is, where it runs, the ``wdlab fit`` process, and what it left behind.

* :func:`cell_identity`: the cell's optimizer registry entry, resolved from the merged configs, the
  pass-through options and its grid values when the cell is created: ``optimizer``, ``decoupled``,
  ``decay_scaling`` (recorded on its trial, so a failed or pending cell's row still says what it is). The entries'
  flags come from the registry the cells see (:func:`optimizer_facts`, reported by the configuration check), so
  the sweep process itself need not import torch.
* :func:`cell_environment`: its placement: one visible GPU per slot in turn, else ``cores / jobs`` threads.
* :func:`run_cell`: the process, in its own session, logged to ``cell.log``, stopped with SIGTERM;
  :class:`FreshProcesses` starts each cell as a new ``python -m wdlab fit``, :class:`PreloadedProcesses` forks it
  from a process that has imported torch and Lightning once (``python -m wdlab.cli.cell_server``).
* :func:`read_cell_result` and :func:`error_from_log`: its result from its events and config, or its error line.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wdlab.experiments.grid import SweepSpec
from wdlab.experiments.results import epoch_of_step, read_scalars

CELL_LOG = "cell.log"
OPTIMIZER_KEY = "model.optimizer"

__all__ = [
    "CELL_LOG",
    "GPU_DEVICE_FILES",
    "LAUNCHERS",
    "CellFailed",
    "CellResult",
    "CheckOutcome",
    "FreshProcesses",
    "PreloadedProcesses",
    "cell_environment",
    "cell_identity",
    "error_from_log",
    "make_launcher",
    "may_have_gpus",
    "optimizer_facts",
    "read_cell_result",
    "run_cell",
    "visible_gpus",
]


# -- what a cell is --------------------------------------------------------------------------------
def _option_pairs(options: Sequence[str]) -> list[tuple[str, str]]:
    """``--key value`` and ``--key=value`` pass-through options as (key, value text), in order."""
    pairs, i = [], 0
    while i < len(options):
        key, sep, value = options[i].removeprefix("--").partition("=")
        if not sep and i + 1 < len(options) and not options[i + 1].startswith("--"):
            value, i = options[i + 1], i + 1
        pairs.append((key, value))
        i += 1
    return pairs


def optimizer_options(spec: SweepSpec, cell: tuple[Any, ...]) -> dict[str, Any]:
    """The cell's ``model.optimizer`` mapping: the configs' in order, then pass-through options, then the grid.

    ``null`` unsets a key (the entry's default applies), as in ``wdlab fit``.
    """
    options: dict[str, Any] = {}
    for path in spec.configs:
        content = yaml.safe_load(path.read_text()) or {}
        model = content.get("model") if isinstance(content, dict) else None
        optimizer = model.get("optimizer") if isinstance(model, dict) else None
        if isinstance(optimizer, dict):
            options.update(optimizer)
    given = [(key, yaml.safe_load(text) if text else None) for key, text in _option_pairs(spec.passthrough)]
    for key, value in [*given, *zip(spec.keys, cell, strict=True)]:
        if key == OPTIMIZER_KEY and isinstance(value, dict):
            options.update(value)
        elif key.startswith(OPTIMIZER_KEY + "."):
            options[key.removeprefix(OPTIMIZER_KEY + ".")] = value
    return {key: value for key, value in options.items() if value is not None}


def optimizer_facts() -> dict[str, dict[str, Any]]:
    """``{name: {"decoupled": flag, "decay_scaling": default}}`` of every entry of :data:`wdlab.optim.REGISTRY`
    (built-in and plug-in): what :func:`cell_identity` needs of the registry, as JSON. Imports torch."""
    from wdlab.optim import REGISTRY

    return {name: {"decoupled": entry.decoupled, "decay_scaling": entry.decay_scaling}
            for name, entry in REGISTRY.items()}


def cell_identity(spec: SweepSpec, cell: tuple[Any, ...],
                  facts: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """``optimizer`` (registry name), ``decoupled`` (the entry's flag) and ``decay_scaling`` of a cell.

    ``facts``: the registry's entries as :func:`optimizer_facts` gives them (default: this process's registry,
    which imports torch). A name missing from the configs or from the registry leaves the flag and the scaling
    out (unknown); an L2 entry has no decay scaling.
    """
    options = optimizer_options(spec, cell)
    name = options.get("name")
    entry = None
    if isinstance(name, str):
        entry = (optimizer_facts() if facts is None else facts).get(name)
    identity: dict[str, Any] = {"optimizer": name} if isinstance(name, str) else {}
    if entry is not None:
        identity["decoupled"] = entry["decoupled"]
        scaling = options.get("decay_scaling", entry["decay_scaling"]) if entry["decoupled"] else None
        if scaling is not None:
            identity["decay_scaling"] = scaling
    return identity


# -- where it runs ---------------------------------------------------------------------------------
#: device files without which no process of this machine can open a GPU through torch.cuda: NVIDIA's driver, ROCm's
#: kernel driver, WSL2's GPU paravirtualization
GPU_DEVICE_FILES = ("nvidiactl", "nvidia0", "kfd", "dxg")


def may_have_gpus(dev: Path = Path("/dev")) -> bool:
    """False when this machine certainly has no GPU torch.cuda could use: Linux without any of
    :data:`GPU_DEVICE_FILES` in ``dev``, or macOS (no CUDA). Then nobody needs to import torch to count them."""
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any((dev / name).exists() for name in GPU_DEVICE_FILES)
    return True


def visible_gpus() -> list[str]:
    """The GPU ids this process may use (``CUDA_VISIBLE_DEVICES`` if set, else every device).

    torch counts them, unless :func:`may_have_gpus` says there is none: a sweep on a CPU machine never imports
    torch in its own process (2 s of a sweep's start)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    if not may_have_gpus():
        return []
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no usable CUDA: CPU cells
        return []


def cell_environment(gpus: Sequence[str], slot: int, jobs: int) -> dict[str, str]:
    """The environment of the cell in ``slot``: its GPU in turn, or its share of the cores on CPU."""
    env = dict(os.environ)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    elif "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


# -- the process ---------------------------------------------------------------------------------
def _log_command(log: Any, env: dict[str, str], command: Sequence[str]) -> None:
    placement = " ".join(f"{k}={env[k]}" for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS") if k in env)
    log.write(f"\n$ {placement + ' ' if placement else ''}{' '.join(command)}\n".encode())
    log.flush()


def run_cell(command: Sequence[str], run_dir: Path, env: dict[str, str], stop: threading.Event) -> tuple[int, float]:
    """Run ``command`` logged to ``run_dir/cell.log``; SIGTERM it once ``stop`` is set. -> (exit status, seconds)."""
    start = time.monotonic()
    with (run_dir / CELL_LOG).open("ab") as log:
        _log_command(log, env, command)
        # Own session: Ctrl-C reaches only the sweep, which then stops the cells with SIGTERM
        # (they save last.ckpt at the end of the batch) instead of killing them mid-write.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        while process.poll() is None:
            if stop.is_set():
                try:
                    process.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                process.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                pass
    return process.returncode, time.monotonic() - start


#: how a cell server starts (by name: the experiments layer does not import the command line)
CELL_SERVER = ("-m", "wdlab.cli.cell_server")
#: the start of the line a configuration check that refuses the cells ends its log with
CHECK_ERROR = "wdlab: error: "


#: the start of the line a configuration check that passes ends its log with: then :func:`optimizer_facts`, as JSON
CHECK_FACTS = "wdlab-sweep-check: optimizers "


@dataclass(frozen=True)
class CheckOutcome:
    """A configuration check's answer: ``reason`` (one line) when the cells do not build, else ``None`` and the
    cells' optimizer registry (:func:`optimizer_facts`)."""

    reason: str | None
    optimizers: dict[str, dict[str, Any]] | None = None


def _check_outcome(log: Path, returncode: int) -> CheckOutcome:
    """What a configuration check left in its ``log``.

    The log is removed unless the check ended without its own error line or, passing, without its registry line
    (a crash): then the reason names the log."""
    line = error_from_log(log, returncode) if returncode else None
    if line is None:
        facts = [text for text in log.read_text(errors="replace").splitlines() if text.startswith(CHECK_FACTS)]
        if facts:
            log.unlink(missing_ok=True)
            return CheckOutcome(None, json.loads(facts[-1].removeprefix(CHECK_FACTS)))
        line = "it ended without its report"
    elif line.startswith(CHECK_ERROR):
        log.unlink(missing_ok=True)
        return CheckOutcome(line.removeprefix(CHECK_ERROR))
    return CheckOutcome(f"the check of the cells' configuration failed: {line} (its log: {log})")


def _check_log() -> Path:
    """A new file for a configuration check's output (before the check, the sweep's folder may not exist)."""
    handle, name = tempfile.mkstemp(prefix="wdlab-sweep-check-", suffix=".log")
    os.close(handle)
    return Path(name)


class FreshProcesses:
    """Each cell a new ``python -m wdlab fit`` process (:func:`run_cell`)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def check(self, fit_options: Sequence[str]) -> CheckOutcome:
        """The cells' configuration check (the cell server's ``--check``) in a new process: whether the cell with
        the ``wdlab fit`` options ``fit_options`` builds and its data files are there (:class:`CheckOutcome`)."""
        log = _check_log()
        with log.open("ab") as handle:
            command = [sys.executable, *CELL_SERVER, "--check", *fit_options]
            returncode = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=self.env).returncode
        return _check_outcome(log, returncode)

    def run(self, fit_args: Sequence[str], run_dir: Path, stop: threading.Event) -> tuple[int, float]:
        return run_cell([sys.executable, "-m", "wdlab", "fit", *fit_args], run_dir, self.env, stop)

    def close(self) -> None:
        pass


class PreloadedProcesses:
    """Each cell forked from one server process of this slot that imported torch and Lightning once
    (:mod:`wdlab.cli.cell_server`; started on the first cell, restarted if it dies, ended by :meth:`close`).

    A cell is still its own process (own session, log and exit status; SIGTERM once ``stop`` is set), so it
    computes what a fresh process computes, without the seconds of imports.
    """

    SERVER = CELL_SERVER

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.server: subprocess.Popen[str] | None = None
        self.child: int | None = None  # the pid of the server's child while a request runs

    def _reply(self, stop: threading.Event, pid: int | None) -> dict[str, Any]:
        """The server's next reply line; SIGTERM to the cell ``pid`` on every wait while ``stop`` is set."""
        assert self.server is not None and self.server.stdout is not None
        while True:
            if pid is not None and stop.is_set():
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            ready, _, _ = select.select([self.server.stdout], [], [], 0.25)
            if ready:
                line = self.server.stdout.readline()
                if not line:
                    status = self.server.wait()
                    self.server = None
                    raise CellFailed(f"the cell server (python {' '.join(self.SERVER)}) exited with status {status} "
                                     "during the cell; re-run the sweep to run it again")
                return json.loads(line)

    def _request(self, request: dict[str, Any], stop: threading.Event) -> int:
        """Send ``request`` to the server (started if it is not running) -> the exit status of its child."""
        if self.server is None or self.server.poll() is not None:
            # its own session: Ctrl-C in the sweep's terminal does not reach the server or its cells
            self.server = subprocess.Popen([sys.executable, *self.SERVER], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, env=self.env, text=True, start_new_session=True)
        assert self.server.stdin is not None
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        self.child = int(self._reply(stop, None)["pid"])
        returncode = int(self._reply(stop, self.child)["returncode"])
        self.child = None
        return returncode

    def check(self, fit_options: Sequence[str]) -> CheckOutcome:
        """The cells' configuration check in a child of this slot's server (which the first cell then finds
        started): whether the cell with the ``wdlab fit`` options ``fit_options`` builds and its data files are
        there (:class:`CheckOutcome`). Interrupted (Ctrl-C), it stops the check and the server before it raises."""
        log = _check_log()
        stop = threading.Event()
        try:
            returncode = self._request({"check": True, "args": list(fit_options), "log": str(log)}, stop)
        except CellFailed as error:
            log.unlink(missing_ok=True)
            return CheckOutcome(f"the check of the cells' configuration failed: {error}")
        except BaseException:
            self.close(kill=True)
            log.unlink(missing_ok=True)
            raise
        return _check_outcome(log, returncode)

    def run(self, fit_args: Sequence[str], run_dir: Path, stop: threading.Event) -> tuple[int, float]:
        start = time.monotonic()
        log_path = run_dir / CELL_LOG
        with log_path.open("ab") as log:
            _log_command(log, self.env, ["(forked from the cell server)", "wdlab", "fit", *fit_args])
        returncode = self._request({"args": list(fit_args), "log": str(log_path.resolve())}, stop)
        return returncode, time.monotonic() - start

    def close(self, kill: bool = False) -> None:
        """End the server (end of its stdin); it has no cell running between two :meth:`run` calls. ``kill``: the
        server's whole session at once (its child too), for a request that is abandoned midway."""
        if self.server is None:
            return
        server, self.server = self.server, None
        if kill:  # the child first (a session of its own), then the server
            for pid in (self.child, server.pid):
                try:
                    if pid is not None:
                        os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.child = None
        try:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            server.kill()
            server.wait()


#: How cells start (``wdlab sweep --launcher``): preloaded where the platform can fork, else fresh.
LAUNCHERS = {"preloaded": PreloadedProcesses, "fresh": FreshProcesses}


def make_launcher(kind: str, env: dict[str, str]) -> FreshProcesses | PreloadedProcesses:
    """The launcher ``kind`` (:data:`LAUNCHERS`) for the cells of one slot, with that slot's environment."""
    if kind not in LAUNCHERS:
        raise ValueError(f"launcher {kind!r}: use one of {', '.join(LAUNCHERS)}")
    if kind == "preloaded" and not hasattr(os, "fork"):
        raise ValueError("launcher 'preloaded' needs os.fork (Linux, macOS): use --launcher fresh on this platform")
    return LAUNCHERS[kind](env)


# -- what it left behind ---------------------------------------------------------------------------
@dataclass
class CellResult:
    final_test_err: float
    best_test_err: float | None
    final_train_loss: float | None
    epochs: int | None
    optimizer: str | None
    final_val_err: float | None = None  # the held-out split's error at the end (runs with val_split only)


class CellFailed(RuntimeError):
    """A cell that ended without a result (the message is recorded in the study and results.csv)."""


def read_cell_result(run_dir: Path) -> CellResult:
    """The results of a finished cell from its TensorBoard events and saved config.yaml."""
    scalars = read_scalars(run_dir)
    test = scalars.get("test/err")
    if not test:
        raise CellFailed("the run ended without a test/err (stopped before the end?); re-run the sweep to resume it")
    config: dict[str, Any] = {}
    if (run_dir / "config.yaml").is_file():
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    data_args = (config.get("data") or {}).get("init_args") or {}
    evaluates_test_set = not data_args.get("val_split")  # then val/err is the test error per epoch
    val = [v for _, v in scalars.get("val/err", [])]
    loss = scalars.get("train/loss", [])
    epochs = epoch_of_step(scalars).get(loss[-1][0]) if loss else None
    return CellResult(
        final_test_err=test[-1][1],
        best_test_err=min([*val, test[-1][1]]) if evaluates_test_set else None,
        final_train_loss=loss[-1][1] if loss else None,
        epochs=epochs,
        optimizer=((config.get("model") or {}).get("optimizer") or {}).get("name"),
        final_val_err=None if evaluates_test_set or not val else val[-1],
    )


def error_from_log(log: Path, returncode: int) -> str:
    """The most telling line of a failed cell's log: wdlab's own error line, else the exception."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith(("wdlab: error:", "error:")):  # wdlab's own line; jsonargparse's parse errors
            return line
    for line in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b", line):
            return line
    return f"exit status {returncode}; see {log}"

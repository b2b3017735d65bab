"""Sweeps: hyperparameter grids (the paper's Fig. 2 heatmaps) where every cell is a ``wdlab fit`` run.

::

    wdlab sweep --config BASE.yaml \\
        --grid model.optimizer.lr=1,0.5,0.25 --grid model.optimizer.weight_decay=0,0.000125,0.00025 \\
        --out runs/my_sweep [--jobs N] [--seeds K] [--trainer.max_epochs 5 ...]

* **Cells.** Every point of the grid, once per seed (``--seed_everything 0..K-1``), is run as its own
  ``python -m wdlab fit --config BASE ... --<key> <value>`` process with its own run directory
  ``OUT/<cell>/`` (TensorBoard events, config.yaml, checkpoints) and log ``OUT/<cell>/cell.log``. Any
  other ``--key value`` given to the sweep is passed to every cell. Grids can also come from the
  config's ``sweep:`` section (the paper's powers-of-two grids are presets in ``configs/``); a
  ``--grid`` option replaces the preset for its key.
* **Engine.** Optuna: a :class:`optuna.samplers.GridSampler` picks the cells and an RDB storage records
  them -- by default the SQLite file ``OUT/sweep.db`` (nothing to set up); ``--storage
  postgresql://...`` lets workers on many machines share one sweep (one worker per GPU, e.g. a SLURM
  array; each runs the same command). Workers record a heartbeat: a cell whose worker died is failed
  after ``--grace_period`` seconds and re-run.
* **Resumable.** Re-running the same command skips finished cells and re-runs failed and interrupted
  ones (each cell resumes from its own ``last.ckpt`` via ``--ckpt_path auto``). A cell that fails is
  recorded with its error and the sweep goes on. Ctrl-C or SIGTERM stops the running cells at the end
  of their current batch (they write ``last.ckpt``). A different config, grid or pass-through option
  for an existing ``OUT`` is refused rather than mixed into its results.
* **Parallel.** ``--jobs N`` runs N cells at once: with GPUs, cell slots take the visible GPUs in turn
  (``CUDA_VISIBLE_DEVICES``); on CPU each cell gets ``cores / N`` threads (``OMP_NUM_THREADS``).
* **Results.** ``OUT/results.csv`` (one row per cell and seed: the grid values, optimizer, state,
  final and best test error, final training loss, wall time, run directory, error) and the heatmaps
  of :mod:`wdlab.experiments.report` in ``OUT/report/`` (PNG, coupling numbers, TensorBoard image).

The results format is :mod:`wdlab.experiments.results`; the command is :mod:`wdlab.cli.sweep`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.samplers import GridSampler
from optuna.trial import TrialState

from wdlab.experiments.results import RESULTS_CSV, epoch_of_step, read_scalars, write_results

SEED_KEY = "seed_everything"
DATABASE = "sweep.db"
CELL_LOG = "cell.log"
SPEC_ATTR = "wdlab_sweep"  # study user attribute: what the sweep runs, to refuse a mismatched re-run

__all__ = ["Sweep", "SweepError", "SweepSpec", "grid_preset", "parse_grid", "parse_value"]


class SweepError(ValueError):
    """A sweep that cannot start as asked (one line, names the fix)."""


# -- the grid ----------------------------------------------------------------------------------
def parse_value(text: str) -> int | float | str | bool:
    """A grid value as typed: an int, a float (``1e-3``, ``2**-10``), true/false, or a string."""
    text = text.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    power = re.fullmatch(r"([+-]?\d+(?:\.\d*)?)\*\*([+-]?\d+)", text)
    if power:
        return float(power.group(1)) ** int(power.group(2))
    try:
        return float(text)
    except ValueError:
        pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_grid(options: Sequence[str]) -> dict[str, list[Any]]:
    """``--grid key=v1,v2,...`` options -> {key: [values]} (keys as ``wdlab fit`` spells them)."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        key, sep, values = option.partition("=")
        key = key.strip().removeprefix("--")
        if not sep or not key or not values.strip():
            raise SweepError(f"--grid {option!r}: write it as KEY=V1,V2,... e.g. --grid model.optimizer.lr=0.1,0.05")
        parsed = [parse_value(v) for v in values.split(",") if v.strip()]
        if len(set(map(repr, parsed))) != len(parsed):
            raise SweepError(f"--grid {option!r} repeats a value: give each value once")
        grid[key] = parsed
    return grid


def grid_preset(configs: Sequence[Path]) -> tuple[dict[str, list[Any]], int | None]:
    """The ``sweep:`` section of the configs (``grid: {key: [values]}``, ``seeds: K``); later files win."""
    grid: dict[str, list[Any]] = {}
    seeds: int | None = None
    for path in configs:
        try:
            content = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise SweepError(f"cannot read config {path}: {error}") from None
        preset = content.get("sweep") if isinstance(content, dict) else None
        if not preset:
            continue
        for key, values in (preset.get("grid") or {}).items():
            if not isinstance(values, list) or not values:
                raise SweepError(f"{path}: sweep.grid.{key} must be a non-empty list of values")
            grid[str(key)] = [parse_value(v) if isinstance(v, str) else v for v in values]
        if preset.get("seeds") is not None:
            seeds = int(preset["seeds"])
    return grid, seeds


def _format(value: Any) -> str:
    return format(value, ".6g") if isinstance(value, float) else str(value)


def cell_names(keys: Sequence[str], cells: Sequence[tuple[Any, ...]]) -> dict[tuple[Any, ...], str]:
    """A directory name per cell, ``lr_0.5__weight_decay_0.00025__seed_0`` (short keys where unique)."""
    short = [k.split(".")[-1] if k != SEED_KEY else "seed" for k in keys]
    if len(set(short)) != len(short):
        short = [k.replace(".", "-") for k in keys]
    names = {
        cell: "__".join(f"{s}_{_format(v)}" for s, v in zip(short, cell, strict=True)).replace("/", "-")
        for cell in cells
    }
    if len(set(names.values())) != len(names):  # values equal to 6 digits: fall back to indices
        names = {cell: f"cell_{i:04d}" for i, cell in enumerate(cells)}
    return names


@dataclass
class SweepSpec:
    """Everything one sweep runs: base configs, the grid, seeds and the options every cell gets."""

    configs: list[Path]
    grid: dict[str, list[Any]]
    seeds: list[int]
    passthrough: list[str]
    out: Path
    keys: list[str] = field(init=False)
    cells: list[tuple[Any, ...]] = field(init=False)
    names: dict[tuple[Any, ...], str] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = [*self.grid, SEED_KEY]
        self.cells = list(itertools.product(*self.grid.values(), self.seeds))
        self.names = cell_names(self.keys, self.cells)

    def search_space(self) -> dict[str, list[Any]]:
        return {**self.grid, SEED_KEY: list(self.seeds)}

    def cell_of(self, params: dict[str, Any]) -> tuple[Any, ...] | None:
        try:
            cell = tuple(params[k] for k in self.keys)
        except KeyError:
            return None
        return cell if cell in self.names else None

    def fit_args(self, cell: tuple[Any, ...]) -> list[str]:
        """The ``wdlab fit`` arguments of a cell (after the ``fit`` subcommand)."""
        args: list[str] = []
        for config in self.configs:
            args += ["--config", str(config)]
        args += self.passthrough
        for key, value in zip(self.keys, cell, strict=True):
            args += [f"--{key}", _format(value) if not isinstance(value, bool) else str(value).lower()]
        args += [
            "--trainer.logger.init_args.save_dir", str(self.out),
            "--trainer.logger.init_args.name", self.names[cell],
            "--ckpt_path", "auto",  # an interrupted or failed cell continues from its last.ckpt
        ]  # fmt: skip
        return args

    def fingerprint(self) -> str:
        """What makes two invocations the same sweep: config contents, grid, seeds, pass-through options."""
        contents = [hashlib.sha256(p.read_bytes()).hexdigest() for p in self.configs]
        return json.dumps(
            {"configs": contents, "grid": self.grid, "seeds": self.seeds, "passthrough": self.passthrough},
            sort_keys=True,
            default=str,
        )


# -- running cells -------------------------------------------------------------------------------
def visible_gpus() -> list[str]:
    """The GPU ids this process may use (``CUDA_VISIBLE_DEVICES`` if set, else every device)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no usable CUDA: CPU cells
        return []


@dataclass
class CellResult:
    final_test_err: float
    best_test_err: float | None
    final_train_loss: float | None
    epochs: int | None
    optimizer: str | None


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


#: The package that provides each PostgreSQL driver SQLAlchemy may load (``postgresql://`` means psycopg 3
#: in SQLAlchemy 2.1 and later, psycopg2 before).
POSTGRES_DRIVERS = {
    "psycopg": 'pip install "wdlab[postgres]" (psycopg 3)',
    "psycopg2": "pip install psycopg2-binary",
    "pg8000": "pip install pg8000",
    "asyncpg": "pip install asyncpg",
}


def driver_hint(url: str) -> str:
    """What to install for the database driver the storage URL ``url`` loads."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        driver = parsed.get_dialect().driver
    except Exception:  # an unparsable URL or an unknown dialect: SQLAlchemy's own message says it
        return "check the URL: e.g. postgresql://user:password@host:5432/database"
    if parsed.get_backend_name() == "postgresql":
        return f"the {driver} driver is missing: {POSTGRES_DRIVERS.get(driver, f'pip install {driver}')}"
    return f"the {driver} driver for {parsed.get_backend_name()} is missing: install it with pip"


#: Attempts at creating the storage's tables or the study when other workers may be doing the same.
SETUP_ATTEMPTS = 8


def _retry_concurrent_setup(create: Any) -> Any:
    """``create()``, again after a short pause if another worker created the same tables or study first.

    Workers started together on an empty database (a SLURM array) race to create Optuna's schema: the
    losers get a unique-constraint error from the database ("already exists"); the tables are there then.
    """
    for attempt in range(SETUP_ATTEMPTS):
        try:
            return create()
        except Exception as error:
            text = f"{type(error).__name__}: {error}"
            if attempt == SETUP_ATTEMPTS - 1 or not re.search(r"IntegrityError|UniqueViolation|already exists", text):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _open_storage(url: str, engine_kwargs: dict[str, Any], heartbeat_interval: int, grace_period: int) -> Any:
    try:
        return _retry_concurrent_setup(
            lambda: optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval, grace_period=grace_period
            )
        )
    except (ImportError, ModuleNotFoundError) as error:
        raise SweepError(f"cannot open storage {url}: {error} ({driver_hint(url)})") from None
    except Exception as error:
        raise SweepError(f"cannot open storage {url}: {type(error).__name__}: {error}") from None


class Sweep:
    """One worker of a sweep: runs cells picked by Optuna until none is left or it is stopped."""

    def __init__(self, spec: SweepSpec, storage: str | None, study_name: str | None, jobs: int, grace_period: int):
        self.spec = spec
        self.jobs = jobs
        self.stop_event = threading.Event()
        self.stop_signal: int | None = None
        self.lock = threading.Lock()
        self.processes: set[subprocess.Popen[bytes]] = set()
        self.gpus = visible_gpus()
        self.slots: list[int] = list(range(jobs))
        self.heartbeat_interval = max(1, min(30, grace_period // 3))

        spec.out.mkdir(parents=True, exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own line per cell
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        url = storage or f"sqlite:///{(spec.out / DATABASE).resolve()}"
        engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
        self.storage = _open_storage(url, engine_kwargs, self.heartbeat_interval, grace_period)
        name = study_name or spec.out.resolve().name
        sampler = SweepGridSampler(spec.search_space(), seed=0)
        self.study = _retry_concurrent_setup(
            lambda: optuna.create_study(study_name=name, storage=self.storage, sampler=sampler, load_if_exists=True)
        )
        fingerprint = spec.fingerprint()
        recorded = self.study.user_attrs.get(SPEC_ATTR)
        if recorded is None:
            self.study.set_user_attr(SPEC_ATTR, fingerprint)
        elif recorded != fingerprint:
            raise SweepError(
                f"{spec.out} (study {name!r}) holds a sweep with a different config, grid, seeds or options: "
                "re-run it with the same arguments, or choose a new --out"
            )

    # -- bookkeeping in the study ------------------------------------------------------------
    def trials_by_cell(self) -> dict[tuple[Any, ...], list[Any]]:
        by_cell: dict[tuple[Any, ...], list[Any]] = {cell: [] for cell in self.spec.cells}
        for trial in self.study.get_trials(deepcopy=False):
            params = trial.params or trial.system_attrs.get("fixed_params", {})
            cell = self.spec.cell_of(params)
            if cell is not None:
                by_cell[cell].append(trial)
        return by_cell

    def enqueue_failed(self, only_killed: bool = False) -> int:
        """Queue a re-run of every cell whose latest trial failed (``only_killed``: whose worker died)."""
        from optuna.storages import fail_stale_trials
        fail_stale_trials(self.study)
        queued = 0
        for cell, trials in self.trials_by_cell().items():
            states = {t.state for t in trials}
            if not trials or states & {TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING}:
                continue
            latest = max(trials, key=lambda t: t.number)
            if latest.state != TrialState.FAIL or (only_killed and "error" in latest.user_attrs):
                continue
            self.study.enqueue_trial(dict(zip(self.spec.keys, cell, strict=True)))
            queued += 1
        return queued

    def counts(self) -> dict[str, int]:
        """Cells by state: complete, running, queued (a re-run waits), failed, pending (never started)."""
        counts = {"complete": 0, "running": 0, "queued": 0, "failed": 0, "pending": 0}
        for trials in self.trials_by_cell().values():
            states = {t.state for t in trials}
            if TrialState.COMPLETE in states:
                counts["complete"] += 1
            elif TrialState.RUNNING in states:
                counts["running"] += 1
            elif TrialState.WAITING in states:
                counts["queued"] += 1
            elif trials:
                counts["failed"] += 1
            else:
                counts["pending"] += 1
        return counts

    def has_work(self) -> bool:
        """A cell never started, or a queued re-run (what the next ``ask`` would get)."""
        for trials in self.trials_by_cell().values():
            if not trials or any(t.state == TrialState.WAITING for t in trials):
                return True
        return False

    # -- one cell --------------------------------------------------------------------------
    def objective(self, trial: Any) -> float:
        params = {key: trial.suggest_categorical(key, values) for key, values in self.spec.search_space().items()}
        cell = self.spec.cell_of(params)
        assert cell is not None
        name = self.spec.names[cell]
        trial.set_user_attr("run_dir", str(self.spec.out / name))
        for other in self.trials_by_cell()[cell]:
            if other.number != trial.number and other.state in (TrialState.COMPLETE, TrialState.RUNNING):
                # two workers picked the same cell at once (possible with several workers): skip it
                raise optuna.TrialPruned(f"cell {name} is already run by trial {other.number}")
        if self.stop_event.is_set():
            self._fail(trial, "interrupted before it started; re-run the sweep")
        run_dir = self.spec.out / name
        run_dir.mkdir(parents=True, exist_ok=True)
        with self.lock:
            slot = self.slots.pop(0)
        try:
            returncode, wall = self._run_process(trial, cell, run_dir, slot)
        finally:
            with self.lock:
                self.slots.append(slot)
        trial.set_user_attr("wall_s", round(wall, 2))
        if self.stop_event.is_set():
            self._fail(trial, "interrupted; re-run the sweep to resume this cell from its last.ckpt")
        if returncode != 0:
            self._fail(trial, error_from_log(run_dir / CELL_LOG, returncode))
        try:
            result = read_cell_result(run_dir)
        except CellFailed as error:
            self._fail(trial, str(error))
        for key, value in vars(result).items():
            if value is not None:
                trial.set_user_attr(key, value)
        return result.final_test_err

    def _fail(self, trial: Any, message: str) -> None:
        trial.set_user_attr("error", message)
        raise CellFailed(message)

    def _run_process(self, trial: Any, cell: tuple[Any, ...], run_dir: Path, slot: int) -> tuple[int, float]:
        env = dict(os.environ)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        elif "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.jobs))
        command = [sys.executable, "-m", "wdlab", "fit", *self.spec.fit_args(cell)]
        start = time.monotonic()
        with (run_dir / CELL_LOG).open("ab") as log:
            placement = " ".join(f"{k}={env[k]}" for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS") if k in env)
            log.write(f"\n$ {placement + ' ' if placement else ''}{' '.join(command)}\n".encode())
            log.flush()
            # Own session: Ctrl-C reaches only the sweep, which then stops the cells with SIGTERM
            # (they save last.ckpt at the end of the batch) instead of killing them mid-write.
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            with self.lock:
                self.processes.add(process)
            try:
                while process.poll() is None:
                    if self.stop_event.is_set():
                        _signal(process, signal.SIGTERM)
                    try:
                        process.wait(timeout=1.0)
                    except subprocess.TimeoutExpired:
                        pass
            finally:
                with self.lock:
                    self.processes.discard(process)
        return process.returncode, time.monotonic() - start

    # -- the loop --------------------------------------------------------------------------
    def stop(self, signum: int) -> None:
        """Stop: no new cells; running ones get SIGTERM (save last.ckpt, exit); re-run to resume."""
        self.stop_signal = signum
        self.stop_event.set()
        with self.lock:
            processes = list(self.processes)
        for process in processes:
            _signal(process, signal.SIGTERM)

    def run(self, progress: bool = True) -> dict[str, int]:
        from tqdm import tqdm  # a dependency of Lightning

        self.enqueue_failed()
        counts = self.counts()
        total = len(self.spec.cells)
        print(
            f"wdlab sweep: {total} cells ({len(self.spec.cells) // len(self.spec.seeds)} grid points x "
            f"{len(self.spec.seeds)} seeds) in {self.spec.out}: {counts['complete']} done, "
            f"{counts['queued']} to re-run, {counts['pending']} to start, {counts['running']} running elsewhere; "
            f"{self.jobs} at a time on {'GPUs ' + ','.join(self.gpus) if self.gpus else 'CPU'}",
            file=sys.stderr,
        )
        bar = tqdm(total=total, initial=counts["complete"], unit="cell", desc="sweep", disable=not progress,
                   dynamic_ncols=True)

        def after_trial(study: Any, trial: Any) -> None:
            params = trial.params or trial.system_attrs.get("fixed_params", {})
            cell = self.spec.cell_of(params)
            name = self.spec.names.get(cell, f"trial {trial.number}") if cell else f"trial {trial.number}"
            wall = trial.user_attrs.get("wall_s")
            took = f" ({wall:.0f} s)" if isinstance(wall, int | float) else ""
            if trial.state == TrialState.COMPLETE:
                bar.update(1)
                bar.write(f"done    {name}: test error {100 * trial.value:.2f} %{took}", file=sys.stderr)
            elif trial.state == TrialState.FAIL:
                bar.write(f"failed  {name}: {trial.user_attrs.get('error', 'unknown error')}{took}", file=sys.stderr)
            self.enqueue_failed(only_killed=True)  # cells of workers that died elsewhere
            if self.stop_event.is_set() or not self.has_work():
                study.stop()

        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for signum in previous:
            signal.signal(signum, lambda signum, frame: self.stop(signum))
        try:
            if self.has_work():
                self.study.optimize(
                    self.objective, n_jobs=self.jobs, catch=(CellFailed,), callbacks=[after_trial],
                    gc_after_trial=False,
                )  # fmt: skip
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            bar.close()
        return self.counts()

    # -- results -----------------------------------------------------------------------------
    def write_results(self) -> Path:
        """``OUT/results.csv``: one row per cell and seed, from the study (all workers' cells)."""
        rows = []
        for cell, trials in self.trials_by_cell().items():
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            chosen = max(complete or trials, key=lambda t: t.number) if trials else None
            attrs = chosen.user_attrs if chosen else {}
            if chosen is None:
                state = "pending"
            elif chosen.state == TrialState.COMPLETE:
                state = "complete"
            elif chosen.state == TrialState.FAIL:
                state = "failed"
            else:
                state = chosen.state.name.lower()
            record = {key: attrs.get(key) for key in ("optimizer", "final_test_err", "best_test_err",
                                                      "final_train_loss", "epochs")}
            record.update(
                state=state,
                wall_s=sum(t.user_attrs.get("wall_s", 0.0) for t in trials) if trials else None,
                run_dir=str(self.spec.out / self.spec.names[cell]),
                error=attrs.get("error", "") if state != "complete" else "",
            )
            rows.append((cell, record))
        return write_results(self.spec.out / RESULTS_CSV, list(self.spec.grid), rows)


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        process.send_signal(signum)
    except ProcessLookupError:
        pass


class SweepGridSampler(GridSampler):
    """GridSampler whose exhaustion does not end ``optimize``: the sweep's callback decides.

    Re-runs of failed cells are enqueued trials, which GridSampler's own stop test (every grid point
    visited) does not count: the stock sampler would stop the sweep after the first of them.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


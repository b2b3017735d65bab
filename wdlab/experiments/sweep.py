"""Sweeps: hyperparameter grids (the paper's Fig. 2 heatmaps) where every cell is a ``wdlab fit`` run.

::

    wdlab sweep --config BASE.yaml \\
        --grid model.optimizer.lr=1,0.5,0.25 --grid model.optimizer.weight_decay=0,0.000125,0.00025 \\
        --out runs/my_sweep [--jobs N] [--seeds K] [--trainer.max_epochs 5 ...]

* **Cells.** Every point of the grid, once per seed (``--seed_everything 0..K-1``), is run as its own
  ``python -m wdlab fit --config BASE ... --<key> <value>`` process with its own run directory
  ``OUT/<cell>/`` and log ``OUT/<cell>/cell.log`` (:mod:`wdlab.experiments.cells`). Any other
  ``--key value`` given to the sweep is passed to every cell. Grids can also come from the config's
  ``sweep:`` section (:mod:`wdlab.experiments.grid`); a ``--grid`` option replaces the preset for its key.
* **The queue.** An Optuna study in an RDB storage (:mod:`wdlab.experiments.storage`): by default the
  SQLite file ``OUT/sweep.db``; ``--storage postgresql://...`` lets workers on many machines share one
  sweep. Every cell is enqueued once, up front, as a WAITING trial carrying its grid values and what it
  is (optimizer, ``decoupled``, ``decay_scaling``); workers pop waiting trials atomically. A cell is
  enqueued again whenever it has no COMPLETE trial and no live (RUNNING or WAITING) one, whatever its
  other trials are: failed, killed (RUNNING without a heartbeat for ``--grace_period`` seconds: failed
  as stale), or PRUNED (how earlier versions marked a cell two workers picked at once).
* **Duplicates.** Workers that start together may both enqueue a cell. The worker that pops one of a
  cell's trials pops the cell's other waiting trials too and retires them (PRUNED, ``duplicate_of``),
  then runs its trial unless the cell is complete or a lower-numbered trial of it is running; so a cell
  never runs twice at once, and a retired trial never stands for a cell that was not run.
* **Nothing left behind.** A worker with nothing queued does not exit while cells run in other workers: it
  waits (a heartbeat interval at a time) and runs any whose worker dies, once that cell is stale.
* **Resumable.** Re-running the same command skips finished cells and re-runs failed and interrupted
  ones (each cell resumes from its own ``last.ckpt`` via ``--ckpt_path auto``). A cell that fails is
  recorded with its error and the sweep goes on. Ctrl-C or SIGTERM stops the running cells at the end
  of their current batch (they write ``last.ckpt``). A different config, grid or pass-through option
  for an existing ``OUT`` is refused rather than mixed into its results.
* **Parallel.** ``--jobs N`` runs N cells at once: with GPUs, cell slots take the visible GPUs in turn
  (``CUDA_VISIBLE_DEVICES``); on CPU each cell gets ``cores / N`` threads (``OMP_NUM_THREADS``).
* **Cheap to start.** Each slot forks its cells from one process that imported torch and Lightning once
  (``launcher="preloaded"``, :class:`~wdlab.experiments.cells.PreloadedProcesses`): seconds less per cell than a
  fresh ``python -m wdlab fit`` (``launcher="fresh"``), with the same results.
* **Results.** ``OUT/results.csv`` (:mod:`wdlab.experiments.results`): one row per cell and seed.

The command is :mod:`wdlab.cli.sweep`.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from wdlab.experiments.cells import (
    CELL_LOG,
    CellFailed,
    FreshProcesses,
    PreloadedProcesses,
    cell_environment,
    cell_identity,
    error_from_log,
    make_launcher,
    read_cell_result,
    visible_gpus,
)
from wdlab.experiments.grid import SEED_KEY, SweepError, SweepSpec, grid_preset, parse_grid, parse_value
from wdlab.experiments.results import RESULTS_CSV, write_results
from wdlab.experiments.storage import default_url, open_storage, open_study, retry_concurrent_setup

SPEC_ATTR = "wdlab_sweep"  # study user attribute: what the sweep runs, to refuse a mismatched re-run
DUPLICATE_ATTR = "duplicate_of"  # on a retired trial: the trial that stands for its cell
#: Optuna's system attribute holding an enqueued trial's parameters (a private key: a WAITING trial has no
#: ``params`` until it runs, and the queue must know the cell of every trial).
FIXED_PARAMS = "fixed_params"
KILLED = "stopped without a result (its worker died, or an earlier wdlab pruned it); re-run the sweep to run it"

__all__ = [
    "SEED_KEY",
    "Sweep",
    "SweepError",
    "SweepSpec",
    "grid_preset",
    "parse_grid",
    "parse_value",
    "retry_concurrent_setup",
]

_LIVE = (TrialState.RUNNING, TrialState.WAITING)


def _attempted(trial: FrozenTrial) -> bool:
    """A run of the cell that ended without a result (not a retired duplicate)."""
    return trial.state in (TrialState.FAIL, TrialState.PRUNED) and DUPLICATE_ATTR not in trial.user_attrs


class Sweep:
    """One worker of a sweep: runs queued cells until none is left or it is stopped."""

    def __init__(self, spec: SweepSpec, storage: str | None, study_name: str | None, jobs: int, grace_period: int,
                 launcher: str = "preloaded", first_launcher: FreshProcesses | PreloadedProcesses | None = None,
                 optimizers: dict[str, dict[str, Any]] | None = None):
        """``first_launcher``: slot 0's launcher, already started (e.g. by the configuration check); the slot
        closes it when it ends. ``optimizers``: the registry the cells see, as the check reported it
        (:func:`~wdlab.experiments.cells.optimizer_facts`; default: this process's, which imports torch)."""
        self.spec = spec
        self.jobs = jobs
        self.launcher = launcher
        self.first_launcher = first_launcher
        self.optimizers = optimizers
        self.stop_event = threading.Event()
        self.stop_signal: int | None = None
        self.lock = threading.Lock()
        self.gpus = visible_gpus()
        self.heartbeat_interval = max(1, min(30, grace_period // 3))
        self.grace_period = grace_period
        self.failures = 0
        self._held: set[int] = set()  # numbers of the trials this worker's slots are running
        self._waiting_said = False
        self._identities: dict[tuple[Any, ...], dict[str, Any]] = {}

        spec.out.mkdir(parents=True, exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own line per cell
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.storage = open_storage(storage or default_url(spec.out), self.heartbeat_interval, grace_period)
        name = study_name or spec.out.resolve().name
        self.study = open_study(self.storage, name)
        self.study_id = self.storage.get_study_id_from_name(name)
        fingerprint = spec.fingerprint()
        recorded = self.study.user_attrs.get(SPEC_ATTR)
        if recorded is None or (recorded != fingerprint and recorded == spec.legacy_fingerprint()):
            self.study.set_user_attr(SPEC_ATTR, fingerprint)  # a study of an older wdlab: now by content
        elif recorded != fingerprint:
            raise SweepError(
                f"{spec.out} (study {name!r}) holds a sweep with a different config, grid, seeds or options: "
                "re-run it with the same arguments, or choose a new --out"
            )

    # -- bookkeeping in the study ------------------------------------------------------------
    def cell_of(self, trial: FrozenTrial) -> tuple[Any, ...] | None:
        return self.spec.cell_of(trial.params or trial.system_attrs.get(FIXED_PARAMS, {}))

    def trials_by_cell(self) -> dict[tuple[Any, ...], list[FrozenTrial]]:
        by_cell: dict[tuple[Any, ...], list[FrozenTrial]] = {cell: [] for cell in self.spec.cells}
        for trial in self.study.get_trials(deepcopy=False):
            cell = self.cell_of(trial)
            if cell is not None:
                by_cell[cell].append(trial)
        return by_cell

    def identity(self, cell: tuple[Any, ...]) -> dict[str, Any]:
        """What the cell is (optimizer, decoupled, decay_scaling), resolved once per cell."""
        if cell not in self._identities:
            self._identities[cell] = cell_identity(self.spec, cell, self.optimizers)
        return self._identities[cell]

    def enqueue_missing(self, only_killed: bool = False) -> int:
        """Enqueue every cell with no COMPLETE and no live trial (``only_killed``: whose last run's worker died).

        ``only_killed`` is for the checks during a run: a cell that failed with an error waits for the next
        invocation instead of failing again and again in this one.
        """
        with self.lock:  # this worker's slots share one pass; other workers' duplicates are retired on pop
            optuna.storages.fail_stale_trials(self.study)
            queued = 0
            for cell, trials in self.trials_by_cell().items():
                if any(t.state == TrialState.COMPLETE or t.state in _LIVE for t in trials):
                    continue
                if only_killed:
                    failed = [t for t in trials if t.state == TrialState.FAIL]
                    if not failed or "error" in max(failed, key=lambda t: t.number).user_attrs:
                        continue
                self.study.enqueue_trial(self.spec.params(cell), user_attrs=self.identity(cell))
                queued += 1
            return queued

    def counts(self) -> dict[str, int]:
        """Cells by state: complete, running, queued (a re-run waits), failed, pending (never started)."""
        counts = {"complete": 0, "running": 0, "queued": 0, "failed": 0, "pending": 0}
        for trials in self.trials_by_cell().values():
            states = {t.state for t in trials}
            attempted = any(map(_attempted, trials))
            if TrialState.COMPLETE in states:
                counts["complete"] += 1
            elif TrialState.RUNNING in states:
                counts["running"] += 1
            elif TrialState.WAITING in states:
                counts["queued" if attempted else "pending"] += 1
            elif attempted:
                counts["failed"] += 1
            else:
                counts["pending"] += 1
        return counts

    # -- the queue ---------------------------------------------------------------------------
    def _trial_id(self, trial: FrozenTrial) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)

    def _pop(self, trial_id: int) -> bool:
        """Take a WAITING trial (WAITING -> RUNNING, atomic in the storage); False if another worker had it."""
        # The heartbeat comes first: a worker killed right after the pop leaves a trial that goes stale.
        self.storage.record_heartbeat(trial_id)
        try:
            return self.storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False

    def _retire(self, trial_id: int, stands_for: int) -> None:
        self.storage.set_trial_user_attr(trial_id, DUPLICATE_ATTR, stands_for)
        self.storage.set_trial_state_values(trial_id, TrialState.PRUNED)

    def claim(self) -> tuple[optuna.Trial, int, tuple[Any, ...]] | None:
        """The next queued cell, popped for this worker: (its trial, the trial's id, the cell); None if none is left."""
        for waiting in self.storage.get_all_trials(self.study_id, deepcopy=False, states=(TrialState.WAITING,)):
            cell = self.cell_of(waiting)
            if cell is None or self.stop_event.is_set():
                continue
            trial_id = self._trial_id(waiting)
            if not self._pop(trial_id):
                continue
            others = [t for t in self.trials_by_cell()[cell] if t.number != waiting.number]
            for other in others:
                if other.state == TrialState.WAITING and self._pop(other_id := self._trial_id(other)):
                    self._retire(other_id, waiting.number)
            others = [t for t in self.trials_by_cell()[cell] if t.number != waiting.number]
            holder = [t for t in others if t.state == TrialState.COMPLETE
                      or (t.state == TrialState.RUNNING and t.number < waiting.number)]  # fmt: skip
            if holder:
                self._retire(trial_id, holder[0].number)
                continue
            trial = optuna.Trial(self.study, trial_id)
            for key, values in self.spec.search_space().items():  # the enqueued values become its params
                trial.suggest_categorical(key, values)
            return trial, trial_id, cell
        return None

    # -- one cell --------------------------------------------------------------------------
    def run_one(self, trial: optuna.Trial, trial_id: int, cell: tuple[Any, ...],
                launcher: FreshProcesses | PreloadedProcesses) -> FrozenTrial:
        """Run the cell of a claimed trial and record its result or its error; the finished trial."""
        run_dir = self.spec.out / self.spec.names[cell]
        run_dir.mkdir(parents=True, exist_ok=True)
        beating = threading.Event()
        heart = threading.Thread(target=self._beat, args=(trial_id, beating), daemon=True)
        heart.start()
        try:
            trial.set_user_attr("run_dir", str(run_dir))
            if self.stop_event.is_set():
                raise CellFailed("interrupted before it started; re-run the sweep")
            returncode, wall = launcher.run(self.spec.fit_args(cell), run_dir, self.stop_event)
            trial.set_user_attr("wall_s", round(wall, 2))
            if self.stop_event.is_set():
                raise CellFailed("interrupted; re-run the sweep to resume this cell from its last.ckpt")
            if returncode != 0:
                raise CellFailed(error_from_log(run_dir / CELL_LOG, returncode))
            result = read_cell_result(run_dir)
            for key, value in vars(result).items():
                if value is not None:
                    trial.set_user_attr(key, value)
            return self.study.tell(trial, result.final_test_err, skip_if_finished=True)
        except CellFailed as error:
            trial.set_user_attr("error", str(error))
            return self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Failed as stale by another worker (no heartbeat for the grace period): its cell is queued again.
            return self.storage.get_trial(trial_id)
        finally:
            beating.set()
            heart.join()

    def _beat(self, trial_id: int, done: threading.Event) -> None:
        while not done.wait(self.heartbeat_interval):
            self.storage.record_heartbeat(trial_id)

    # -- the loop --------------------------------------------------------------------------
    def stop(self, signum: int) -> None:
        """Stop: no new cells; running ones get SIGTERM (save last.ckpt, exit); re-run to resume.

        Safe in a signal handler: it only sets flags (the cells' loops send the SIGTERM).
        """
        self.stop_signal = signum
        self.stop_event.set()

    def running_elsewhere(self) -> int:
        """Cells whose trial is RUNNING in another worker (not in one of this worker's slots)."""
        with self.lock:
            held = set(self._held)
        running = self.storage.get_all_trials(self.study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return sum(1 for t in running if t.number not in held and self.cell_of(t) is not None)

    def wait_for_cells_elsewhere(self) -> bool:
        """Nothing is queued: while cells run in other workers, wait one heartbeat interval, then re-queue those
        whose worker died (no heartbeat for the grace period), so that this worker runs them. True to look for
        work again; False when no cell runs elsewhere or the sweep is stopped.

        Without the wait, a cell whose worker dies after the others ran out of work would stay undone until
        someone ran the sweep again.
        """
        elsewhere = self.running_elsewhere()
        if not elsewhere:
            return False
        with self.lock:
            if not self._waiting_said:
                self._waiting_said = True
                print(f"wdlab sweep: nothing queued here; waiting for {elsewhere} cell(s) running elsewhere (run "
                      f"here if their worker stops for {self.grace_period} s; Ctrl-C stops waiting)",
                      file=sys.stderr)
        if self.stop_event.wait(self.heartbeat_interval):
            return False
        self.enqueue_missing(only_killed=True)
        return True

    def _work(self, slot: int, report: Any, errors: list[BaseException]) -> None:
        launcher = (self.first_launcher if slot == 0 and self.first_launcher is not None
                    else make_launcher(self.launcher, cell_environment(self.gpus, slot, self.jobs)))
        try:
            while not self.stop_event.is_set():
                claimed = self.claim()
                if claimed is None:
                    if self.wait_for_cells_elsewhere():
                        continue
                    return
                trial, trial_id, cell = claimed
                with self.lock:
                    self._held.add(trial.number)
                try:
                    report(self.run_one(trial, trial_id, cell, launcher), cell)
                finally:
                    with self.lock:
                        self._held.discard(trial.number)
                self.enqueue_missing(only_killed=True)  # cells of workers that died elsewhere
        except BaseException as error:  # raised in the main thread: the other slots stop and are waited for
            errors.append(error)
            self.stop_event.set()
        finally:
            launcher.close()

    def run(self, progress: bool = True) -> dict[str, int]:
        import signal

        from tqdm import tqdm  # a dependency of Lightning

        self.enqueue_missing()
        counts = self.counts()
        total = len(self.spec.cells)
        print(
            f"wdlab sweep: {total} cells ({len(self.spec.cells) // len(self.spec.seeds)} grid points x "
            f"{len(self.spec.seeds)} seeds) in {self.spec.out}: {counts['complete']} done, "
            f"{counts['queued']} to re-run, {counts['pending']} to start, {counts['running']} running elsewhere; "
            f"{self.jobs} at a time on {'GPUs ' + ','.join(self.gpus) if self.gpus else 'CPU'}",
            file=sys.stderr,
        )
        # cells done / total, the time left at the rate of this worker's cells, and the failures so far
        bar = tqdm(total=total, initial=counts["complete"], unit="cell", desc="sweep", disable=not progress,
                   dynamic_ncols=True, postfix={"failed": 0})
        # Each cell's line also says where the sweep stands (for logs, where there is no bar): cells done /
        # total, failures, and the time left at the rate of this worker's cells so far.
        done = [counts["complete"], 0]  # cells complete in the study, cells this worker finished (either way)
        started = time.monotonic()

        def standing() -> str:
            finished = done[1]
            left = ""
            if finished and total > done[0]:
                rate = (time.monotonic() - started) / finished
                left = f", ~{tqdm.format_interval(rate * (total - done[0]))} left"
            return f"[{done[0]}/{total} done, {self.failures} failed{left}]"

        def report(trial: FrozenTrial, cell: tuple[Any, ...]) -> None:
            wall = trial.user_attrs.get("wall_s")
            took = f" ({wall:.0f} s)" if isinstance(wall, int | float) else ""
            with self.lock:
                done[1] += 1
                if trial.state == TrialState.COMPLETE:
                    done[0] += 1
                    bar.update(1)
                    bar.write(f"done    {self.spec.names[cell]}: test error {100 * trial.value:.2f} %{took} "
                              f"{standing()}", file=sys.stderr)
                else:
                    self.failures += 1
                    bar.set_postfix(failed=self.failures)
                    bar.write(f"failed  {self.spec.names[cell]}: {trial.user_attrs.get('error', KILLED)}{took} "
                              f"{standing()}", file=sys.stderr)

        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for signum in previous:
            signal.signal(signum, lambda signum, frame: self.stop(signum))
        errors: list[BaseException] = []
        try:
            workers = [threading.Thread(target=self._work, args=(slot, report, errors), daemon=True)
                       for slot in range(self.jobs)]
            for worker in workers:
                worker.start()
            for worker in workers:
                while worker.is_alive():
                    worker.join(timeout=0.5)  # the main thread stays free to take the signals
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            bar.close()
        if errors:
            raise errors[0]
        return self.counts()

    # -- results -----------------------------------------------------------------------------
    def write_results(self) -> Path:
        """``OUT/results.csv``: one row per cell and seed, from the study (all workers' cells)."""
        rows = []
        for cell, trials in self.trials_by_cell().items():
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            attempts = [t for t in trials if _attempted(t)]
            if complete:
                state, chosen = "complete", max(complete, key=lambda t: t.number)
            elif any(t.state == TrialState.RUNNING for t in trials):
                state, chosen = "running", max(trials, key=lambda t: t.number)
            elif attempts:
                state, chosen = "failed", max(attempts, key=lambda t: t.number)
            else:
                state, chosen = "pending", None
            attrs = chosen.user_attrs if chosen else {}
            recorded = {key: t.user_attrs[key] for t in trials for key in ("decoupled", "decay_scaling")
                        if key in t.user_attrs}  # fmt: skip
            record = {**self.identity(cell), **recorded}
            record.update({key: attrs[key] for key in ("optimizer", "final_test_err", "best_test_err",
                                                       "final_train_loss", "epochs", "final_val_err") if key in attrs})
            record.update(
                state=state,
                wall_s=sum(t.user_attrs.get("wall_s", 0.0) for t in trials) if trials else None,
                run_dir=str(self.spec.out / self.spec.names[cell]),
                error=attrs.get("error", KILLED) if state == "failed" else "",
            )
            rows.append((cell, record))
        return write_results(self.spec.out / RESULTS_CSV, list(self.spec.grid), rows)

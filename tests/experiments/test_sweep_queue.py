"""The sweep's queue loses no cell: real SQLite studies, real ``wdlab sweep`` and ``wdlab fit`` processes, SIGKILLs.

The study states earlier versions could leave behind (a killed cell followed by a pruned duplicate; two
trials of one cell that pruned each other) are built with Optuna's own API in a real ``sweep.db``; the
real command must then end with every cell complete exactly once. A copy of a shipped replication
study must resume without re-running anything. Only Optuna and the command are imported at the top:
these tests also run against earlier versions of the sweep (which failed them).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from paths import REPO
from sweep_helpers import BASE, GRID, cell_processes, lost_cells, results, sweep

pytestmark = pytest.mark.trains

LR = "model.optimizer.lr"
TWO_CELLS = ["--grid", f"{LR}=0.1,0.05"]


def complete_per_cell(study: optuna.Study) -> Counter[tuple[tuple[str, object], ...]]:
    return Counter(tuple(sorted(t.params.items())) for t in study.get_trials() if t.state == TrialState.COMPLETE)


def test_lost_cells_are_run_again(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    out = tmp_path / "sweep"
    out.mkdir()
    storage = f"sqlite:///{out / 'sweep.db'}"
    lost_cells(optuna.create_study(study_name=out.name, storage=storage), {LR: [0.1, 0.05]})
    args = ["--config", str(tmp_path / "base.yaml"), *TWO_CELLS, "--out", str(out), "--no_report"]

    done = sweep(args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "0 done, 2 to re-run, 0 to start" in done.stderr
    assert "2/2 cells done, 0 failed" in done.stderr
    assert [row["state"] for row in results(out)] == ["complete", "complete"]
    study = optuna.load_study(study_name=out.name, storage=storage)
    assert sorted(complete_per_cell(study).values()) == [1, 1], "each cell complete exactly once"
    assert "Traceback" not in done.stderr
    for row in results(out):  # what each cell is, recorded when it was enqueued
        assert (row["optimizer"], row["decoupled"], row["decay_scaling"]) == ("sgdw", "1", "schedule"), row


def test_a_cell_enqueued_twice_runs_once(tmp_path: Path) -> None:
    """Two workers starting together may both enqueue every cell: each cell still runs once."""
    (tmp_path / "base.yaml").write_text(BASE)
    out = tmp_path / "sweep"
    out.mkdir()
    storage = f"sqlite:///{out / 'sweep.db'}"
    study = optuna.create_study(study_name=out.name, storage=storage)
    for lr in (0.1, 0.05, 0.1, 0.05):
        study.enqueue_trial({LR: lr, "seed_everything": 0})
    done = sweep(["--config", str(tmp_path / "base.yaml"), *TWO_CELLS, "--out", str(out), "--no_report"],
                 cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2/2 cells done, 0 failed" in done.stderr
    for row in results(out):
        log = (out / Path(row["run_dir"]).name / "cell.log").read_text()
        assert sum(line.startswith("$ ") for line in log.splitlines()) == 1, "the cell ran twice"
    trials = optuna.load_study(study_name=out.name, storage=storage).get_trials()
    assert sorted(complete_per_cell(study).values()) == [1, 1]
    retired = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(retired) == 2 and all("duplicate_of" in t.user_attrs for t in retired)


def test_a_shipped_study_resumes_and_reruns_nothing(tmp_path: Path) -> None:
    shipped = REPO / "docs" / "replication" / "fig13_adam"
    out = tmp_path / "runs" / "replication" / "fig13_adam"  # where it was run: run_dir values stay the same
    out.mkdir(parents=True)
    for name in ("sweep.db", "results.csv"):
        shutil.copy(shipped / name, out / name)
    before = results(out)
    grid = ["--grid", f"{LR}=0.00390625", "--grid", "model.optimizer.weight_decay=0.00390625"]
    done = sweep(["--config", str(REPO / "configs" / "replication" / "fig13_adam.yaml"), *grid,
                  "--out", "runs/replication/fig13_adam", "--no_report"], cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "8 done, 0 to re-run, 0 to start, 0 running elsewhere" in done.stderr
    assert not list(out.glob("*/cell.log")), "no cell ran"
    after = results(out)
    assert [{column: row[column] for column in before[0]} for row in after] == before  # new columns come after
    assert {(row["decoupled"], row["decay_scaling"]) for row in after} == {("0", "")}  # adam: L2, no scaling
    study = optuna.load_study(study_name="fig13_adam", storage=f"sqlite:///{out / 'sweep.db'}")
    assert len(study.trials) == 8, "nothing enqueued into a finished study"


def test_sqlite_pops_each_waiting_trial_once(tmp_path: Path) -> None:
    """Four processes pop 200 queued trials as the sweep does: no trial is popped twice."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(study_name="race", storage=url)
    for x in range(200):
        study.enqueue_trial({"x": x})
    popper = f"""
import sys, time
from optuna.trial import TrialState
from wdlab.experiments.storage import open_storage
storage = open_storage({url!r}, heartbeat_interval=1, grace_period=3)
study_id = storage.get_study_id_from_name("race")
start = float(sys.argv[1])
while time.time() < start:
    pass
popped = []
while waiting := storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
    for trial in waiting:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        if storage.set_trial_state_values(trial_id, TrialState.RUNNING):
            popped.append(trial.number)
print(*popped)
"""
    start = str(time.time() + 8)  # every process has imported and opened the storage by then
    processes = [subprocess.Popen([sys.executable, "-c", popper, start], stdout=subprocess.PIPE, text=True)
                 for _ in range(4)]
    popped = [int(n) for process in processes for n in process.communicate(timeout=300)[0].split()]
    assert all(process.returncode == 0 for process in processes)
    assert sorted(popped) == list(range(200)), f"popped twice: {[n for n, k in Counter(popped).items() if k > 1]}"


@pytest.mark.slow
def test_three_workers_two_killed_at_random_moments_every_cell_complete_once(tmp_path: Path) -> None:
    rng = random.Random(23)  # the moments are random but the same on every run
    (tmp_path / "base.yaml").write_text(BASE)
    out = tmp_path / "sweep"
    args = ["--config", str(tmp_path / "base.yaml"), *GRID, "--out", str(out), "--no_report", "--grace_period", "3",
            "--trainer.max_epochs", "2", "--launcher", "fresh"]  # fmt: skip  (timed for fresh cells)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [subprocess.Popen([sys.executable, "-m", "wdlab", "sweep", *args], cwd=tmp_path, env=env,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT) for log in logs]
    try:
        # each victim dies at a random moment of its first cell (or of the claims and enqueueing around it)
        for victim in workers[1:]:
            deadline = time.monotonic() + 300
            while not cell_processes(victim.pid)[1] and victim.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(rng.uniform(0.0, 4.0))
            for pid in [victim.pid, *cell_processes(victim.pid)[0]]:  # a machine lost: the worker and its cells
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            victim.wait()
        assert workers[0].wait(timeout=600) == 0, logs[0].read_text()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    time.sleep(5)  # past the grace period: the killed workers' cells count as dead
    again = sweep(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "4/4 cells done, 0 failed" in again.stderr
    assert [row["state"] for row in results(out)] == ["complete"] * 4
    study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'sweep.db'}")
    assert sorted(complete_per_cell(study).values()) == [1, 1, 1, 1], "each cell complete exactly once"
    killed = [t for t in study.trials if t.state == TrialState.FAIL and "error" not in t.user_attrs]
    assert killed, "no cell was killed while it ran: the test tested nothing"
    assert "Traceback" not in logs[0].read_text() + again.stderr


def test_a_worker_with_nothing_queued_runs_the_cell_of_a_worker_that_dies(tmp_path: Path) -> None:
    """One cell: the first worker runs it; a second worker, finding nothing queued, waits for it instead of
    exiting; the first worker's machine dies mid-cell; after the grace period the second runs the cell."""
    long_cell = ["--trainer.max_epochs", "40", "--data.init_args.num_train", "256"]  # ~10 s: time to kill it
    (tmp_path / "base.yaml").write_text(BASE)
    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "wdlab", "sweep", "--config", str(tmp_path / "base.yaml"), "--grid", f"{LR}=0.1",
            "--out", str(out), "--grace_period", "3", "--no_report", *long_cell]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = {name: (tmp_path / f"{name}.log").open("w+") for name in ("victim", "survivor")}
    victim = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=logs["victim"], stderr=subprocess.STDOUT)
    survivor = None
    try:
        deadline = time.monotonic() + 120
        while not cell_processes(victim.pid)[1] and time.monotonic() < deadline and victim.poll() is None:
            time.sleep(0.1)
        assert cell_processes(victim.pid)[1], (tmp_path / "victim.log").read_text()
        survivor = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=logs["survivor"], stderr=subprocess.STDOUT)
        while "waiting for 1 cell(s) running elsewhere" not in (tmp_path / "survivor.log").read_text():
            assert survivor.poll() is None and time.monotonic() < deadline, (tmp_path / "survivor.log").read_text()
            time.sleep(0.1)
        machine, cells = cell_processes(victim.pid)
        assert cells, "the first worker's cell ended before the second worker waited for it: make the cell longer"
        for pid in [victim.pid, *machine]:  # the machine is lost: the worker, its cell server and cell at once
            os.kill(pid, signal.SIGKILL)
        victim.wait()
        assert survivor.wait(timeout=300) == 0, (tmp_path / "survivor.log").read_text()
    finally:
        for process in (victim, survivor):
            if process is not None and process.poll() is None:
                process.kill()
        for log in logs.values():
            log.close()
    log = (tmp_path / "survivor.log").read_text()
    assert "1/1 cells done, 0 failed, 0 running elsewhere" in log, log
    assert [row["state"] for row in results(out)] == ["complete"]
    study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'sweep.db'}")
    states = Counter(t.state for t in study.get_trials())
    assert states == {TrialState.FAIL: 1, TrialState.COMPLETE: 1}, states  # the dead worker's, failed as stale

"""``wdlab sweep`` on a real PostgreSQL server: two workers share one study and one output folder, one
worker dies in the middle of a cell (SIGKILL, with its cell: a machine lost), two cells were lost by
earlier versions (a killed cell then a pruned duplicate; two mutually pruned trials), and every cell
still ends complete exactly once.

The server is a throwaway PostgreSQL (``initdb`` in a temp directory, 127.0.0.1 only, run as the
``postgres`` user when the tests run as root). Skipped where PostgreSQL is not installed.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from sweep_helpers import BASE, GRID, cell_processes, lost_cells

pytestmark = [pytest.mark.slow, pytest.mark.trains]

# test_sweep's cell (PreActResNet-8 of width 4), on 256 images for 3 epochs: long enough to be killed mid-cell.
LONGER = ["--trainer.max_epochs", "3", "--data.init_args.num_train", "256"]
GRACE_S = 3


def _bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if found and (Path(found) / "initdb").is_file():
            return Path(found)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (initdb / pg_ctl not found)")
    as_postgres: list[str] = []
    # Not under pytest's tmp_path: its parents are private to the user running the tests.
    root = Path(tempfile.mkdtemp(prefix="wdlab-postgres-"))
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*as_postgres, *command], capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{' '.join(command)}: {done.stdout}{done.stderr}"

    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "start")
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "wdlab")
        yield f"postgresql://postgres@127.0.0.1:{port}/wdlab"
    finally:
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _worker(base: Path, out: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "wdlab", "sweep", "--config", str(base), *GRID, *LONGER, "--out", str(out),
               "--storage", url, "--grace_period", str(GRACE_S), "--no_report"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=base.parent, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def test_two_workers_one_killed_mid_cell_every_cell_complete_once(postgres_url: str, tmp_path: Path) -> None:
    base, out = tmp_path / "base.yaml", tmp_path / "out"
    base.write_text(BASE)
    grid = {"model.optimizer.lr": [0.1, 0.05], "model.optimizer.weight_decay": [0.001, 0.002]}  # test_sweep's GRID
    lost_cells(optuna.create_study(study_name=out.name, storage=postgres_url), grid)
    survivor = _worker(base, out, postgres_url, tmp_path / "survivor.log")
    victim = _worker(base, out, postgres_url, tmp_path / "victim.log")
    try:
        deadline = time.monotonic() + 120
        cells: list[int] = []
        while not cells and time.monotonic() < deadline and victim.poll() is None:
            machine, cells = cell_processes(victim.pid)
            time.sleep(0.2)
        assert cells, f"the second worker never started a cell:\n{(tmp_path / 'victim.log').read_text()}"
        time.sleep(2.0)  # the cell is running: its trial is RUNNING in the study
        # listed again just before the kill, while a cell runs: a tiny cell may have ended in those 2 s
        machine, cells = cell_processes(victim.pid)
        while not cells and time.monotonic() < deadline + 60 and victim.poll() is None:
            time.sleep(0.05)
            machine, cells = cell_processes(victim.pid)
        assert cells, "the second worker ran out of cells before it could be killed mid-cell"
        for pid in [victim.pid, *machine]:  # the machine is lost: the worker, its cell server and cell die at once
            with contextlib.suppress(ProcessLookupError):  # a cell that ended between the listing and the kill
                os.kill(pid, 9)
        victim.wait()
        # the survivor runs the dead worker's cell once it is stale, waiting for it if its own ran out first
        assert survivor.wait(timeout=600) == 0, (tmp_path / "survivor.log").read_text()
    finally:
        for process in (survivor, victim):
            if process.poll() is None:
                process.kill()

    log = (tmp_path / "survivor.log").read_text()
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    cells_in_csv = [(row["model.optimizer.lr"], row["model.optimizer.weight_decay"], row["seed"]) for row in rows]
    assert len(rows) == 4 and len(set(cells_in_csv)) == 4, rows
    assert [row["state"] for row in rows] == ["complete"] * 4, rows
    assert all(0.0 <= float(row["final_test_err"]) <= 1.0 for row in rows)

    study = optuna.load_study(study_name=out.name, storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    complete = [tuple(sorted(t.params.items())) for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4 and len(set(complete)) == 4, "a cell completed twice or not at all"
    ran = [t for t in trials if "run_dir" in t.user_attrs]  # trials a worker started (not the lost ones)
    killed = [t for t in ran if t.state == optuna.trial.TrialState.FAIL]
    assert len(killed) == 1 and "error" not in killed[0].user_attrs, "the dead worker's cell is failed as stale"
    assert tuple(sorted(killed[0].params.items())) in complete, "the dead worker's cell was re-run by the survivor"
    assert "4/4 cells done" in log, log
    assert "Traceback" not in log, log

"""How a sweep's cells start: ``--launcher preloaded`` (forked from a server that imported torch and Lightning
once, :mod:`wdlab.cli.cell_server`) computes exactly what ``--launcher fresh`` (a new process per cell) computes,
logs each cell to its own cell.log, survives a failing cell, stops a cell with SIGTERM, and ends its server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sweep_helpers import BASE, results, sweep

from wdlab.experiments.cells import PreloadedProcesses, cell_environment, make_launcher

pytestmark = pytest.mark.trains

METRICS = ("final_test_err", "best_test_err", "final_train_loss", "epochs", "state", "error")


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    return tmp_path / "base.yaml"


def test_preloaded_cells_compute_what_fresh_processes_compute(base: Path, tmp_path: Path) -> None:
    # one slot, three cells: the second and third are forked from a server that has already run a cell
    grid = ["--grid", "model.optimizer.weight_decay=0,0.001,0.004", "--trainer.max_epochs", "2"]
    rows = {}
    for launcher in ("fresh", "preloaded"):
        out = tmp_path / launcher
        done = sweep(["--config", str(base), *grid, "--out", str(out), "--launcher", launcher, "--no_report"],
                     cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        rows[launcher] = [{k: r[k] for k in ("model.optimizer.weight_decay", *METRICS)} for r in results(out)]
        logs = [(out / Path(r["run_dir"]).name / "cell.log").read_text() for r in results(out)]
        # each cell's own output lands in its own log (the forked child's stdout and stderr)
        assert all("test/err" in log for log in logs), logs
        assert all(("forked from the cell server" in log) == (launcher == "preloaded") for log in logs)
    assert rows["preloaded"] == rows["fresh"]
    assert len({r["final_train_loss"] for r in rows["fresh"]}) == 3  # the decays differ: a real comparison


def test_a_failing_cell_leaves_the_server_running_for_the_next(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    # base_width 0 is refused by the model: that cell fails in its child, the next one runs (one slot: the same
    # server runs all three)
    done = sweep(["--config", str(base), "--grid", "model.net.init_args.base_width=4,0,8", "--out", str(out),
                  "--launcher", "preloaded", "--no_report"], cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    first, bad, after = results(out)
    assert bad["state"] == "failed" and "base_width" in bad["error"], bad
    assert first["state"] == after["state"] == "complete" and after["error"] == "", after


def test_the_server_stops_a_cell_with_sigterm_and_ends_on_close(tmp_path: Path) -> None:
    launcher = make_launcher("preloaded", cell_environment([], 0, 1))
    assert isinstance(launcher, PreloadedProcesses)
    (tmp_path / "base.yaml").write_text(BASE)
    run_dir = tmp_path / "cell"
    run_dir.mkdir()
    stop = threading.Event()
    args = ["--config", str(tmp_path / "base.yaml"), "--trainer.max_epochs", "500",
            "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.logger.init_args.name", "cell"]

    def stop_once_training() -> None:  # SIGTERM (via stop) once the cell has finished an epoch
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints" / "last.ckpt").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()

    stopper = threading.Thread(target=stop_once_training)
    stopper.start()
    returncode, wall = launcher.run(args, run_dir, stop)
    stopper.join()
    server = launcher.server
    assert server is not None and server.poll() is None  # the server outlives its cells
    assert returncode == 0 and wall > 0  # SIGTERM: a clean, resumable stop, like 'wdlab fit'
    assert "SIGTERM" in (run_dir / "cell.log").read_text()
    launcher.close()
    assert server.poll() is not None and launcher.server is None


def test_an_unknown_launcher_is_refused() -> None:
    with pytest.raises(ValueError, match="launcher 'forked': use one of preloaded, fresh"):
        make_launcher("forked", {})

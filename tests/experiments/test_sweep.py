"""``wdlab sweep`` end to end: real ``wdlab fit`` cells, a real Optuna SQLite study, CSV and heatmap."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from paths import REPO, TESTS
from sweep_helpers import BASE, GRID, cell_processes, results, sweep

from wdlab.cli.sweep import split_passthrough
from wdlab.experiments import cells
from wdlab.experiments.cells import GPU_DEVICE_FILES, cell_identity, may_have_gpus, visible_gpus
from wdlab.experiments.results import read_results, read_scalars, write_results
from wdlab.experiments.sweep import SweepError, SweepSpec, grid_preset, parse_grid, parse_value

pytestmark = pytest.mark.trains

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
def commands_run(cell_dir: Path) -> int:
    """How many times the sweep started this cell (each start appends its command line to cell.log)."""
    return sum(line.startswith("$ ") for line in (cell_dir / "cell.log").read_text().splitlines())


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    return tmp_path / "base.yaml"


# -- parsing ---------------------------------------------------------------------------------------
def test_parse_values_and_grid() -> None:
    assert parse_value("2**-3") == 0.125
    assert parse_value("1e-3") == 0.001 and parse_value("7") == 7 and parse_value("true") is True
    assert parse_value("adamw") == "adamw"
    assert parse_grid(["model.optimizer.lr=1,0.5", "--model.optimizer.name=sgd,sgdw"]) == {
        "model.optimizer.lr": [1, 0.5],
        "model.optimizer.name": ["sgd", "sgdw"],
    }
    for bad in ("model.optimizer.lr", "=1,2", "model.optimizer.lr=", "model.optimizer.lr=1,1"):
        with pytest.raises(SweepError):
            parse_grid([bad])


def test_split_passthrough_keeps_cell_options_in_order() -> None:
    args, rest = split_passthrough(
        ["--config", "a.yaml", "--trainer.max_epochs", "5", "--grid", "x=1,2", "--jobs=2", "--data.root=/d",
         "--out", "o", "--seed", "3"]
    )  # fmt: skip
    assert (args.config, args.grid, args.jobs, args.out, args.seeds) == (["a.yaml"], ["x=1,2"], 2, "o", None)
    assert rest == ["--trainer.max_epochs", "5", "--data.root=/d", "--seed", "3"]  # --seed: no abbreviation
    with pytest.raises(SweepError, match="unexpected argument 'stray'"):
        split_passthrough(["--config", "a.yaml", "--out", "o", "stray"])
    with pytest.raises(SweepError, match="unexpected argument '6'"):
        split_passthrough(["--config", "a.yaml", "--out", "o", "--trainer.max_epochs", "5", "6"])


def test_grid_preset_from_config(tmp_path: Path) -> None:
    grid, seeds = grid_preset([REPO / "configs" / "fig2_small" / "sgdw.yaml"])
    assert seeds == [0, 1]
    assert grid["model.optimizer.lr"] == [2.0**e for e in range(-7, -2)]
    assert grid["model.optimizer.weight_decay"] == [2.0**e for e in range(-12, -7)]
    (tmp_path / "bad.yaml").write_text("sweep: {grid: {model.optimizer.lr: 0.1}}\n")
    with pytest.raises(SweepError, match="non-empty list"):
        grid_preset([tmp_path / "bad.yaml"])


def test_cell_identity_from_configs_options_and_grid(base: Path, tmp_path: Path) -> None:
    names = SweepSpec(configs=[base], grid={"model.optimizer.name": ["sgdw", "adam", "sgdc", "nosuch"]}, seeds=[0],
                      passthrough=["--trainer.max_epochs=2", "--model.optimizer.decay_scaling", "lr"], out=tmp_path)
    assert [cell_identity(names, cell) for cell in names.cells] == [
        {"optimizer": "sgdw", "decoupled": True, "decay_scaling": "lr"},  # the pass-through option wins
        {"optimizer": "adam", "decoupled": False},  # L2: no decay scaling
        {"optimizer": "sgdc", "decoupled": True, "decay_scaling": "lr"},
        {"optimizer": "nosuch"},  # not in the registry: unknown
    ]
    defaults = SweepSpec(configs=[base], grid={"model.optimizer.name": ["sgdc"]}, seeds=[0],
                         passthrough=["--model.optimizer.decay_scaling=null"], out=tmp_path)  # null: the default
    assert cell_identity(defaults, defaults.cells[0]) == {"optimizer": "sgdc", "decoupled": True,
                                                          "decay_scaling": "corrected"}
    from_config = SweepSpec(configs=[base], grid={"model.optimizer.lr": [0.1]}, seeds=[0], passthrough=[],
                            out=tmp_path)
    assert cell_identity(from_config, from_config.cells[0]) == {"optimizer": "sgdw", "decoupled": True,
                                                                "decay_scaling": "schedule"}


def test_results_csv_writes_the_decoupled_flag_as_1_0_or_empty(tmp_path: Path) -> None:
    rows = [((v, 0), {"state": "pending", "decoupled": flag}) for v, flag in ((1, True), (2, False), (3, None))]
    written = read_results(write_results(tmp_path / "results.csv", ["x"], rows))
    assert [row["decoupled"] for row in written] == ["1", "0", ""]
    columns = list(written[0])  # right after the columns old readers know (error was the last of them)
    assert columns.index("decoupled") == columns.index("error") + 1 == columns.index("decay_scaling") - 1


# -- end to end --------------------------------------------------------------------------------------
def test_tiny_sweep_end_to_end(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    unthreaded = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the sweep sets it per cell
    done = sweep(["--config", str(base), *GRID, "--out", str(out), "--jobs", "2", "--data.init_args.augment", "false"],
                 cwd=tmp_path, env=unthreaded)
    assert done.returncode == 0, done.stderr
    assert "4/4 cells done, 0 failed" in done.stderr
    # each cell's line says where the sweep stands, also in a log (no bar): done / total, failures, time left
    first_done = r"\ndone    \S+: test error [\d.]+ % \(\d+ s\) \[1/4 done, 0 failed, ~[\d:]+ left\]\n"
    assert re.search(first_done, done.stderr), done.stderr
    assert re.search(r"\[4/4 done, 0 failed\]\n", done.stderr), done.stderr
    rows = results(out)
    assert [(r["model.optimizer.lr"], r["model.optimizer.weight_decay"]) for r in rows] == [
        ("0.1", "0.001"), ("0.1", "0.002"), ("0.05", "0.001"), ("0.05", "0.002"),
    ]  # fmt: skip
    for row in rows:
        assert row["state"] == "complete" and row["optimizer"] == "sgdw" and row["seed"] == "0"
        assert row["epochs"] == "1" and float(row["wall_s"]) > 0 and row["error"] == ""
        run_dir = Path(row["run_dir"]) if Path(row["run_dir"]).is_absolute() else tmp_path / row["run_dir"]
        scalars = read_scalars(run_dir)  # each cell is a real run with its own events, config and checkpoint
        assert float(row["final_test_err"]) == pytest.approx(scalars["test/err"][-1][1], abs=1e-6)
        assert float(row["final_train_loss"]) == pytest.approx(scalars["train/loss"][-1][1], rel=1e-5)
        # --jobs 2 on CPU: each cell gets its share of the cores
        threads = max(1, (os.cpu_count() or 1) // 2)
        assert f"OMP_NUM_THREADS={threads} " in (run_dir / "cell.log").read_text()
        assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
        # the grid values and the pass-through option reached the cell
        config = (run_dir / "config.yaml").read_text()
        assert f"lr: {row['model.optimizer.lr']}" in config and "augment: false" in config
    # Optuna's study holds the cells
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'sweep.db'}")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 4
    assert (out / "report" / "heatmap.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "report" / "coupling.csv").is_file()

    # the same command again: every cell is done, nothing is re-run
    again = sweep(["--config", str(base), *GRID, "--out", str(out), "--jobs", "2", "--data.init_args.augment", "false"],
                  cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "4 done, 0 to re-run, 0 to start" in again.stderr
    assert all(commands_run(out / Path(r["run_dir"]).name) == 1 for r in rows)

    # a different grid or pass-through option into the same directory is refused, nothing touched
    before = (out / "results.csv").read_bytes()
    other = sweep(["--config", str(base), *GRID, "--out", str(out), "--trainer.max_epochs", "2"], cwd=tmp_path)
    assert other.returncode == 2
    assert "holds a sweep with a different config" in other.stderr
    assert (out / "results.csv").read_bytes() == before


def test_failing_cell_is_recorded_and_rerun_on_the_next_invocation(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    # base_width 0 is rejected by the model: that cell fails, the other one still runs
    args = ["--config", str(base), "--grid", "model.net.init_args.base_width=4,0", "--out", str(out)]
    first = sweep(args, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1", "WDLAB_PROGRESS": "1"})
    assert first.returncode == 1, first.stderr
    assert "1/2 cells done, 1 failed" in first.stderr
    # the progress bar: cells done / total, [elapsed<remaining], and the failures so far
    assert re.search(r"sweep: .*\b1/2 \[[\d:]+<[\d:?]+, .*failed=1\]", first.stderr), first.stderr
    good, bad = results(out)
    assert good["state"] == "complete" and good["error"] == ""
    assert bad["state"] == "failed" and bad["final_test_err"] == ""
    for row in (good, bad):  # a failed cell's row still says what it is
        assert (row["optimizer"], row["decoupled"], row["decay_scaling"]) == ("sgdw", "1", "schedule"), row
    assert "base_width" in bad["error"]  # the cell's own one-line error, from its log
    assert "base_width" in (out / "base_width_0__seed_0" / "cell.log").read_text()

    # --results_only: results.csv from the study as it stands, and no cell is started
    written = (out / "results.csv").read_text()
    (out / "results.csv").unlink()
    snapshot = sweep([*args, "--results_only"], cwd=tmp_path)
    assert snapshot.returncode == 0, snapshot.stderr
    assert (out / "results.csv").read_text() == written
    assert commands_run(out / "base_width_0__seed_0") == commands_run(out / "base_width_4__seed_0") == 1
    nothing = sweep([*args[:-1], str(tmp_path / "elsewhere"), "--results_only"], cwd=tmp_path)
    assert nothing.returncode == 2 and "holds no sweep yet" in nothing.stderr

    second = sweep(args, cwd=tmp_path)
    assert second.returncode == 1
    assert "1 done, 1 to re-run, 0 to start" in second.stderr
    assert commands_run(out / "base_width_4__seed_0") == 1
    assert commands_run(out / "base_width_0__seed_0") == 2


@pytest.mark.slow
def test_interrupted_sweep_resumes_the_interrupted_cell_from_its_checkpoint(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    # 2 cells of 6 epochs (12 steps); SIGTERM once the first cell has written an epoch-end last.ckpt
    args = ["--config", str(base), "--grid", "model.optimizer.lr=0.1,0.05", "--out", str(out),
            "--trainer.max_epochs", "6"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "wdlab", "sweep", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (checkpoints := list(out.glob("*/checkpoints/last.ckpt"))):
        assert process.poll() is None and time.monotonic() < deadline, "the first cell never wrote a checkpoint"
        time.sleep(0.05)
    first_cell = checkpoints[0].parents[1]  # whichever cell the worker popped first
    first, second = ("0.1", "0.05") if first_cell.name == "lr_0.1__seed_0" else ("0.05", "0.1")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr  # like 'wdlab fit': SIGTERM is a clean, resumable stop
    assert "stopped; re-run the same command to resume" in stderr
    rows = {r["model.optimizer.lr"]: r for r in results(out)}
    assert rows[first]["state"] == "failed" and "interrupted" in rows[first]["error"]
    assert rows[second]["state"] == "pending"
    assert (rows[second]["optimizer"], rows[second]["decoupled"], rows[second]["decay_scaling"]) == ("sgdw", "1",
                                                                                                   "schedule")
    assert "Traceback" not in stderr

    again = sweep(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 done, 1 to re-run, 1 to start" in again.stderr
    rows = {r["model.optimizer.lr"]: r for r in results(out)}
    assert rows["0.1"]["state"] == rows["0.05"]["state"] == "complete"
    log = (first_cell / "cell.log").read_text()
    assert commands_run(first_cell) == 2 and "resuming from" in log  # continued from last.ckpt, not restarted
    assert [step for step, _ in read_scalars(first_cell)["test/err"]] == [12]
    for row in rows.values():  # the evaluation set is the test set: the best per-epoch error, the final one included
        scalars = read_scalars(Path(row["run_dir"]))
        errors = [v for _, v in [*scalars["val/err"], *scalars["test/err"]]]
        assert len(errors) >= 6 and float(row["best_test_err"]) == pytest.approx(min(errors), abs=1e-6)


@pytest.mark.slow
def test_ctrl_c_stops_the_cells_at_a_batch_end_and_exits_130(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = ["--config", str(base), "--grid", "model.optimizer.lr=0.1,0.05", "--out", str(out),
            "--trainer.max_epochs", "6"]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "wdlab", "sweep", *args], cwd=tmp_path,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("*/checkpoints/last.ckpt")):
        assert process.poll() is None and time.monotonic() < deadline, "the first cell never wrote a checkpoint"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends to the sweep (the cells run in their own sessions)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "stopped; re-run the same command to resume" in stderr
    states = sorted(r["state"] for r in results(out))
    assert states == ["failed", "pending"], states
    interrupted = next(r for r in results(out) if r["state"] == "failed")
    assert "interrupted" in interrupted["error"]


def test_jobs_take_the_visible_gpus_in_turn(base: Path, tmp_path: Path) -> None:
    # No GPU is needed to check the placement: the cells run on CPU (accelerator: cpu) and the sweep logs
    # the CUDA_VISIBLE_DEVICES it gave each of them.
    out = tmp_path / "sweep"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "5,7"}
    done = sweep(["--config", str(base), *GRID, "--out", str(out), "--jobs", "2"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "2 at a time on GPUs 5,7" in done.stderr
    placements = [line.split()[1] for cell in out.glob("*/cell.log") for line in cell.read_text().splitlines()
                  if line.startswith("$ ")]
    assert len(placements) == 4 and set(placements) <= {"CUDA_VISIBLE_DEVICES=5", "CUDA_VISIBLE_DEVICES=7"}
    assert len(set(placements)) == 2


def test_bad_input_fails_before_any_cell_runs(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    typo = sweep(["--config", str(base), *GRID, "--out", str(out), "--trainer.max_epocs", "2"], cwd=tmp_path)
    assert typo.returncode == 2
    assert "wdlab sweep: error: the cells' configuration is invalid" in typo.stderr
    assert "max_epocs" in typo.stderr.strip().splitlines()[-1]  # the reason, not a cut-off "Parser key" line
    assert not out.exists()
    # An error every cell shares that only building the objects finds: the base sets weight_decay, and a
    # weight_decay_norm grid adds the other parameterization. Found once, before the study is created.
    both = sweep(["--config", str(base), "--grid", "model.optimizer.weight_decay_norm=0.025,0.05", "--out", str(out)],
                 cwd=tmp_path)
    lines = [line for line in both.stderr.splitlines() if line.strip()]
    assert both.returncode == 2, both.stderr
    assert lines == ["wdlab sweep: error: the cells' configuration is invalid: give either weight_decay (raw lambda) "
                     "or weight_decay_norm (normalized lambda), not both; to replace the one a config file "
                     "sets, unset it with --model.optimizer.weight_decay null or "
                     "--model.optimizer.weight_decay_norm null"], both.stderr
    assert not out.exists()  # nothing written, and the folder is not locked to these arguments
    csv_logger = tmp_path / "csv_logger.yaml"  # no TensorBoard events to read the results from
    csv_logger.write_text("trainer:\n  logger:\n    class_path: lightning.pytorch.loggers.CSVLogger\n"
                          "    init_args: {save_dir: runs}\n")
    for args, message in (
        (["--config", str(tmp_path / "missing.yaml"), *GRID], "does not exist"),
        (["--config", str(base)], "no grid"),
        (["--config", str(base), "--grid", "model.optimizer.lr"], "KEY=V1,V2"),
        (["--config", str(base), *GRID, "--seed_everything", "3"], "use --out / --seeds"),
        (["--config", str(base), *GRID, "--jobs", "0"], "--jobs must be at least 1"),
        (["--config", str(base), *GRID, "--test_after_fit", "false"], "drop --test_after_fit false"),
        (["--config", str(base), "--config", str(csv_logger), *GRID], "set trainer.logger to"),
        # dataset files missing: every cell would fail in turn; found once, before the study
        (["--config", str(base), *GRID, "--data", "wdlab.data.FashionMNISTDataModule", "--data.root",
          str(tmp_path)], f"the cells' data cannot be read: Fashion-MNIST not found in {tmp_path}"),
    ):
        failed = sweep([*args, "--out", str(out)], cwd=tmp_path)
        assert failed.returncode == 2, failed.stderr
        assert message in failed.stderr
        assert not out.exists()


def test_dry_run_checks_the_first_cell_and_writes_nothing(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    done = sweep(["--config", str(base), *GRID, "--seeds", "2", "--out", str(out), "--dry_run"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "8 cells (4 grid points x 2 seeds)" in done.stderr
    assert "wdlab fit --config" in done.stderr and "--model.optimizer.lr 0.1" in done.stderr
    assert not out.exists() and not (tmp_path / "runs").exists()
    typo = sweep(["--config", str(base), *GRID, "--out", str(out), "--dry_run", "--trainer.max_epocs", "2"],
                 cwd=tmp_path)
    assert typo.returncode == 2 and "max_epocs" in typo.stderr and not out.exists()


def test_the_configuration_check_runs_in_a_cell_server_and_the_sweep_never_imports_lightning(
        base: Path, tmp_path: Path) -> None:
    """A sweep checks its first cell in a child of slot 0's cell server (``--launcher fresh``: in a process of its
    own): a refusal comes back as one line, the first cell runs on that server, and the sweep process itself never
    imports Lightning, nor torch on a machine without GPU device files (the check reports the optimizer registry
    the cells' rows are described with)."""
    out = tmp_path / "sweep"
    common = ["--config", str(base), "--grid", "model.optimizer.lr=0.1", "--out", str(out), "--no_report"]
    typo = ["--trainer.max_epocs", "2"]
    calls = [[*common, *typo], [*common, *typo, "--launcher", "fresh"], common]
    code = ("import sys\nfrom wdlab.cli.sweep import main\n"
            f"codes = [main(args) for args in {calls!r}]\n"
            "heavy = ('lightning', 'torchmetrics', 'torchvision', 'torch')\n"
            "print(codes, sorted(m for m in heavy if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    counted_gpus = ["torch"] if may_have_gpus() and "CUDA_VISIBLE_DEVICES" not in os.environ else []
    assert done.stdout.strip() == f"[2, 2, 0] {counted_gpus}", done.stdout + done.stderr
    refusals = [line for line in done.stderr.splitlines() if line.startswith("wdlab sweep: error:")]
    assert len(refusals) == 2 and all("the cells' configuration is invalid" in line and "max_epocs" in line
                                      for line in refusals), done.stderr
    (row,) = results(out)
    assert (row["state"], row["optimizer"], row["decoupled"], row["decay_scaling"]) == ("complete", "sgdw", "1",
                                                                                       "schedule"), row
    log = next(out.glob("lr_*/cell.log")).read_text()
    assert "(forked from the cell server)" in log


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the device-file rule is Linux's")
@pytest.mark.parametrize("device_file", [None, *GPU_DEVICE_FILES])
def test_gpus_are_counted_by_torch_only_where_a_gpu_device_file_exists(device_file, tmp_path, monkeypatch):
    import torch

    if device_file is not None:
        (tmp_path / device_file).touch()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(cells, "may_have_gpus", lambda: may_have_gpus(tmp_path))
    assert visible_gpus() == ([] if device_file is None else ["0", "1"])


def _process_state(pid: int) -> str:
    """``/proc``'s state letter and kernel wait channel of ``pid`` (or "gone")."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return f"{state} {Path(f'/proc/{pid}/wchan').read_text()}"
    except OSError:
        return "gone"


def test_ctrl_c_during_the_configuration_check_stops_it_at_once_and_leaves_no_process_behind(
        base: Path, tmp_path: Path) -> None:
    """The check's data preparation takes minutes here (as building a dataset cache can): Ctrl-C ends the sweep,
    its cell server and the check at once, instead of waiting for the check to finish; also when the sweep started
    with SIGINT ignored, as a shell starts a background job (``wdlab sweep ... &``) and a ``kill -INT`` then asks."""
    out = tmp_path / "sweep"
    slow = ["--data", "lightning_helpers.SlowToPrepare", "--data.init_args.seconds", "300"]
    worker = subprocess.Popen([sys.executable, "-m", "wdlab", "sweep", "--config", str(base), *GRID, *slow, "--out",
                               str(out)], cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                             "PYTHONPATH": str(TESTS), "PYTHONFAULTHANDLER": "1"},
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    machine: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(cell_processes(worker.pid)[0]) < 2 and time.monotonic() < deadline:  # the server and its check
            time.sleep(0.05)
        machine = cell_processes(worker.pid)[0]
        assert len(machine) == 2, "the check never started in a child of the cell server"
        time.sleep(8)  # the server has imported Lightning and the check is in prepare_data()
        assert cell_processes(worker.pid)[0] == machine
        worker.send_signal(signal.SIGINT)
        try:
            _, stderr = worker.communicate(timeout=20)  # at once: not after the check (300 s) or close()'s 30 s wait
        except subprocess.TimeoutExpired:  # where each process is, and the sweep's Python stack (faulthandler)
            states = {pid: _process_state(pid) for pid in [worker.pid, *machine]}
            worker.send_signal(signal.SIGABRT)
            worker.wait(timeout=20)
            os.set_blocking(worker.stderr.fileno(), False)  # its cell server may hold the pipe open still
            try:
                stack = os.read(worker.stderr.fileno(), 1 << 20).decode(errors="replace")
            except BlockingIOError:
                stack = ""
            pytest.fail(f"the sweep did not stop within 20 s of SIGINT; processes {states}; its stderr:\n{stack}")
    finally:
        if worker.poll() is None:
            worker.kill()
        for pid in machine:  # a failed test leaves no sleeping check behind either
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert worker.returncode == 130 and stderr.strip().splitlines()[-1] == "wdlab sweep: interrupted", stderr
    time.sleep(0.5)
    alive = [pid for pid in machine if Path(f"/proc/{pid}").exists()
             and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, f"left running after Ctrl-C: {alive}"
    assert not out.exists()


def test_a_missing_database_driver_names_the_package_to_install(base: Path, tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("psycopg2 is installed: the missing-driver message cannot be seen")
    out = tmp_path / "out"
    done = sweep(["--config", str(base), *GRID, "--out", str(out), "--storage",
                  "postgresql+psycopg2://wdlab@127.0.0.1:1/sweeps"], cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert lines[-1].startswith("wdlab sweep: error: cannot open storage postgresql+psycopg2://"), done.stderr
    assert "pip install psycopg2-binary" in lines[-1]
    assert not any(p.name.startswith("lr_") for p in out.glob("*")), "no cell ran"


def test_workers_racing_to_create_the_schema_retry_instead_of_failing() -> None:
    from wdlab.experiments.storage import retry_concurrent_setup

    calls: list[int] = []

    def lost_the_race_twice() -> str:
        calls.append(1)
        if len(calls) <= 2:  # what PostgreSQL answers the worker that lost the CREATE TYPE race
            raise RuntimeError('(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint')
        return "study"

    assert retry_concurrent_setup(lost_the_race_twice) == "study" and len(calls) == 3

    def other_error() -> None:
        calls.append(1)
        raise RuntimeError("connection refused")

    calls.clear()
    with pytest.raises(RuntimeError, match="connection refused"):
        retry_concurrent_setup(other_error)
    assert len(calls) == 1  # no retry for anything else

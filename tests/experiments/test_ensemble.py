"""``wdlab ensemble`` (wdlab.cli.ensemble.main) on checkpoints of a real, tiny training run."""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from paths import REPO
from tiny_runs import builtin_data

from wdlab.cli import main
from wdlab.cli.ensemble import main as run_ensemble
from wdlab.experiments.ensemble import snapshot_info

pytestmark = pytest.mark.trains

CONFIG = str(REPO / "configs" / "quickstart.yaml")
# 256 training images in batches of 64 -> 4 steps per epoch; 128 test images.
DATA = builtin_data(256, 128, 64)
NAMES = ["period-0-epoch-1.ckpt", "period-1-epoch-2.ckpt", "period-2-epoch-3.ckpt"]


@dataclass
class Run:
    root: Path
    raw: list[Path]  # snap-epoch=0.ckpt ... in training order (Lightning's own checkpoints)
    snapshots: Path  # the same files as period-<i>-epoch-<e>.ckpt
    probs: list[torch.Tensor]  # softmax outputs on the test split, computed here independently
    labels: torch.Tensor


def _independent_probs(paths: list[Path]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Softmax outputs of each checkpoint on the test split, computed here from the raw generated images
    and the bare network -- none of the command's pipeline (no build_cli, no datamodule, no
    transform_batch): x = (pixels / 255 - mean) / std with the training set's per-channel statistics."""
    from wdlab.data.builtin import make_builtin_dataset
    from wdlab.models import PreActResNet

    train_x, _, test_x, test_y = make_builtin_dataset(num_train=256, num_test=128, seed=0)
    pixels = train_x.astype(np.float64) / 255
    mean = pixels.mean(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    std = pixels.std(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    images = torch.from_numpy((test_x.astype(np.float64) / 255 - mean) / std).float()
    out = []
    for path in paths:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        net = PreActResNet(**checkpoint["hyper_parameters"]["net"]["init_args"]).eval()
        net.load_state_dict({k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items()})
        with torch.inference_mode():
            out.append(torch.cat([torch.softmax(net(images[i : i + 50]), dim=1) for i in range(0, len(images), 50)]))
    return out, torch.from_numpy(test_y)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp("ensemble")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        main([
            "fit", "--config", CONFIG, "--trainer.max_epochs", "3", "--model.optimizer.t0_epochs", "1",
            "--model.optimizer.t_mult", "1", *DATA, "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--test_after_fit", "false", "--checkpoint.every_n_epochs", "1",
            "--checkpoint.save_top_k", "-1", "--checkpoint.filename", "snap-{epoch}",
        ])  # fmt: skip
    raw = sorted(root.glob("runs/**/snap-*.ckpt"), key=lambda p: int(re.search(r"epoch=(\d+)", p.name).group(1)))
    assert len(raw) == 3, raw
    snapshots = root / "snapshots"
    snapshots.mkdir()
    for src, name in zip(raw, NAMES, strict=True):
        shutil.copy(src, snapshots / name)
    # One snapshot carries the metadata the training run will write.
    ckpt = torch.load(snapshots / NAMES[1], map_location="cpu", weights_only=False)
    ckpt["wdlab_snapshot"] = {"period": 1, "epoch": 2, "step": 8}
    torch.save(ckpt, snapshots / NAMES[1])
    probs, labels = _independent_probs(raw)
    return Run(root, raw, snapshots, probs, labels)


def _wrong(probs: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    return int((probs.topk(k, dim=1).indices != labels[:, None]).all(dim=1).sum())


def _table(stdout: str) -> dict[str, list[str]]:
    """label -> [epoch, step, top-1, top-5] from the printed table."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("snapshot "))
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[start + 1 :] if line.strip()]
    return {row[0]: row[1:] for row in rows}


def _pct(wrong: int, n: int) -> str:
    return f"{100 * wrong / n:.2f} %"


def test_table_snapshots_in_order_and_ensembles_match_an_independent_computation(run, tmp_path, capsys):
    out_csv = tmp_path / "ens.csv"
    argv = ["--config", CONFIG, "--snapshots", str(run.snapshots), *DATA, "--csv", str(out_csv), "--device", "cpu"]
    assert run_ensemble(argv) == 0
    table = _table(capsys.readouterr().out)
    ensembles = [f"ensemble of last {k}" for k in (1, 2, 3)]
    assert list(table) == [*NAMES, *ensembles]
    assert [table[name][:2] for name in NAMES] == [["1", "4"], ["2", "8"], ["3", "12"]]
    n = len(run.labels)
    expected = {}
    for name, probs in zip(NAMES, run.probs, strict=True):
        expected[name] = (_wrong(probs, run.labels, 1), _wrong(probs, run.labels, 5))
    for k in (1, 2, 3):
        mean = torch.stack(run.probs[-k:]).mean(dim=0)
        expected[f"ensemble of last {k}"] = (_wrong(mean, run.labels, 1), _wrong(mean, run.labels, 5))
    assert expected["ensemble of last 1"] == expected[NAMES[-1]]
    for label, (top1, top5) in expected.items():
        assert table[label][2:] == [_pct(top1, n), _pct(top5, n)], label
    assert table["ensemble of last 3"][:2] == ["1-3", "4-12"]

    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == list(table)
    for r in rows:
        top1, top5 = expected[r["name"]]
        assert (int(r["top1_wrong"]), int(r["top5_wrong"]), int(r["num_examples"])) == (top1, top5, n)
        assert f"{float(r['top1_err_pct']):.2f} %" == table[r["name"]][2]
        assert f"{float(r['top5_err_pct']):.2f} %" == table[r["name"]][3]
    assert [r["members"] for r in rows] == ["1", "1", "1", "1", "2", "3"]
    assert [r["period"] for r in rows[:3]] == ["0", "1", "2"]


@pytest.mark.parametrize("limit", ["2", "0.5"])
def test_limit_batches_evaluates_the_first_batches_of_the_split(limit, run, capsys):
    """2 batches, or half of the 4 batches of 32: the first 64 test images, for every snapshot and ensemble."""
    argv = ["--config", CONFIG, "--snapshots", str(run.snapshots), *DATA, "--device", "cpu", "--batch_size", "32",
            "--limit_batches", limit]
    assert run_ensemble(argv) == 0
    out = capsys.readouterr().out
    assert f"test split: 64 images (--limit_batches {limit}: not the whole split)" in out
    table = _table(out)
    first = [probs[:64] for probs in run.probs]
    for name, probs in zip(NAMES, first, strict=True):
        assert table[name][2] == _pct(_wrong(probs, run.labels[:64], 1), 64), name
    mean = torch.stack(first).mean(dim=0)
    assert table["ensemble of last 3"][2] == _pct(_wrong(mean, run.labels[:64], 1), 64)


@pytest.mark.parametrize("limit", ["0", "1.5", "-2", "all"])
def test_a_bad_limit_batches_is_a_usage_error(limit, run, capsys):
    assert run_ensemble(["--snapshots", str(run.snapshots), "--limit_batches", limit]) == 2
    assert "--limit_batches: must be a" in capsys.readouterr().err


def test_a_list_of_files_is_ordered_by_the_checkpoints_own_epoch_and_step(run, capsys):
    # Lightning's names (snap-epoch=0 is 0-based, no "epoch-<e>"): ordered by checkpoint["epoch"] + 1, global_step.
    files = [str(run.raw[i]) for i in (2, 0, 1)]
    assert run_ensemble(["--config", CONFIG, "--snapshots", *files, *DATA, "--device", "cpu"]) == 0
    table = _table(capsys.readouterr().out)
    names = [p.name for p in run.raw]
    assert list(table)[:3] == names
    assert [table[name][:2] for name in names] == [["1", "4"], ["2", "8"], ["3", "12"]]
    n = len(run.labels)
    for name, probs in zip(names, run.probs, strict=True):
        assert table[name][2] == _pct(_wrong(probs, run.labels, 1), n)


def test_the_runs_saved_config_is_found_and_accepted(run, capsys):
    """No --config: RUN_DIR/config.yaml (a saved `fit` config, with ckpt_path) next to the checkpoints folder."""
    assert list(run.root.glob("runs/**/config.yaml"))
    files = [str(p) for p in run.raw[1:]]
    assert run_ensemble(["--snapshots", *files, "--split", "val", "--batch_size", "50"]) == 0
    captured = capsys.readouterr()
    assert "using the run's config" in captured.err
    assert "val split: 128 images, 10 classes" in captured.out
    assert list(_table(captured.out)) == [run.raw[1].name, run.raw[2].name, "ensemble of last 1", "ensemble of last 2"]


def test_snapshot_order_prefers_metadata_then_file_name_then_lightning_fields():
    ckpt = {"epoch": 9, "global_step": 100}
    info = snapshot_info(Path("a/last.ckpt"), ckpt)
    assert (info.epoch, info.step, info.period) == (10, 100, None)
    info = snapshot_info(Path("period-3-epoch-70.ckpt"), ckpt)
    assert (info.epoch, info.step, info.period) == (70, 100, 3)
    meta = {**ckpt, "wdlab_snapshot": {"period": 2, "epoch": 30, "step": 300}}
    info = snapshot_info(Path("period-3-epoch-70.ckpt"), meta)
    assert (info.epoch, info.step, info.period) == (30, 300, 2)


def _error_case(case: str, run: Run, tmp_path: Path, monkeypatch) -> list[str]:
    if case == "empty dir":
        (tmp_path / "empty").mkdir()
        return ["--config", CONFIG, "--snapshots", str(tmp_path / "empty")]
    if case == "missing path":
        return ["--config", CONFIG, "--snapshots", str(tmp_path / "nope")]
    if case == "truncated checkpoint":
        data = (run.snapshots / NAMES[0]).read_bytes()
        (tmp_path / "half.ckpt").write_bytes(data[: len(data) // 2])
        return ["--config", CONFIG, "--snapshots", str(run.snapshots / NAMES[1]), str(tmp_path / "half.ckpt")]
    if case == "other architecture":
        return ["--config", CONFIG, "--snapshots", str(run.snapshots), *DATA, "--model.net.init_args.base_width", "32"]
    if case == "classes mismatch":
        monkeypatch.setattr("wdlab.data.BuiltinDataModule.num_classes", 12)
        return ["--config", CONFIG, "--snapshots", str(run.snapshots), *DATA]
    raise AssertionError(case)


ERRORS = {
    "empty dir": "no snapshots",
    "missing path": "no such file or directory",
    "truncated checkpoint": "not a loadable checkpoint",
    "other architecture": "pass the --config the run was trained with",
    "classes mismatch": "12 classes",
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_is_one_error_line_and_status_2(case, run, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WDLAB_DEBUG", raising=False)
    argv = _error_case(case, run, tmp_path, monkeypatch)
    assert run_ensemble(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("wdlab: error: ")]
    assert len(lines) == 1, err
    assert ERRORS[case] in lines[0]
    assert "Traceback" not in err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_errors_match_the_cpu_computation_up_to_rounding(run, capsys):
    assert run_ensemble(["--config", CONFIG, "--snapshots", str(run.snapshots), *DATA, "--device", "cuda"]) == 0
    captured = capsys.readouterr()
    assert "on cuda" in captured.out
    table = _table(captured.out)
    n = len(run.labels)
    for name, probs in zip(NAMES, run.probs, strict=True):
        got = float(table[name][2].rstrip(" %"))
        assert abs(got - 100 * _wrong(probs, run.labels, 1) / n) <= 100 * 2 / n + 1e-9, name


def test_wdlab_debug_reraises(run, tmp_path, monkeypatch):
    monkeypatch.setenv("WDLAB_DEBUG", "1")
    with pytest.raises(Exception, match="no snapshots"):
        run_ensemble(["--snapshots", str(tmp_path)])


def test_the_runs_own_snapshots_through_the_wdlab_command(run, capsys):
    """The training run wrote snapshots/period-<i>-epoch-<e>.ckpt itself; `wdlab ensemble` reads them."""
    (real,) = [p for p in run.root.glob("runs/*/snapshots") if p.is_dir()]
    names = sorted(p.name for p in real.glob("*.ckpt"))
    assert names == ["period-0-epoch-1.ckpt", "period-1-epoch-2.ckpt", "period-2-epoch-3.ckpt"]
    assert main(["ensemble", "--config", CONFIG, "--snapshots", str(real), "--device", "cpu", *DATA]) == 0
    table = _table(capsys.readouterr().out)
    assert [table[name][0] for name in names] == ["1", "2", "3"]
    assert {f"ensemble of last {k}" for k in (1, 2, 3)} <= set(table)
    # the final snapshot holds the same weights as Lightning's epoch-3 checkpoint: same errors
    assert table["period-2-epoch-3.ckpt"][2:] == table["ensemble of last 1"][2:]

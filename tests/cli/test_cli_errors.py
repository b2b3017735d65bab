"""Bad input to the CLI, table-driven: each case is refused with one line on stderr that names the
problem (and the fix), exit status 2, no usage dump, and nothing written or overwritten."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from paths import REPO

from wdlab.cli import main

QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
TINY = [
    "--config", QUICKSTART, "--trainer.max_epochs", "1", "--model.optimizer.t0_epochs", "1",
    "--data.init_args.num_train", "128", "--data.init_args.num_test", "64", "--trainer.enable_progress_bar", "false",
    "--test_after_fit", "false",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run in <folder>/runs/quickstart, copied into each test's folder."""
    folder = tmp_path_factory.mktemp("finished")
    assert main(["fit", *TINY, "--trainer.logger.init_args.save_dir", str(folder / "runs")]) == 0
    return folder / "runs"


def _state(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time (ns)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


CASES = {
    "unknown optimizer": (["fit", *TINY, "--model.optimizer.name", "adamx"],
                          "unknown optimizer 'adamx' (did you mean 'adam'?); known:"),
    "lr <= 0": (["fit", *TINY, "--model.optimizer.lr", "0"], "lr must be a number > 0"),
    "both decays": (["fit", *TINY, "--model.optimizer.weight_decay", "0.1"],
                    "give either weight_decay (raw lambda) or weight_decay_norm"),
    "batch size 0": (["fit", *TINY, "--data.init_args.batch_size", "0"], "batch_size must be a whole number >= 1"),
    "unknown option": (["fit", *TINY, "--trainer.max_epoch", "1"],
                       "unrecognized arguments: --trainer.max_epoch 1; check the spelling: 'wdlab fit --help_all'"),
    "abbreviated option": (["fit", *TINY, "--trainer.max_e", "1"], "unrecognized arguments: --trainer.max_e 1"),
    "unknown key in a config file": (["fit", *TINY, "--config", "typo.yaml"],
                                     "does not accept option 'trainer.max_epoch' (set in typo.yaml)"),
    "missing config file": (["fit", "--config", "nothere.yaml"], "File does not exist"),
    "missing data root": (["fit", *TINY, "--data", "wdlab.data.CIFAR10DataModule", "--data.root", "no/cifar"],
                          "no/cifar"),
    "truncated checkpoint": (["fit", *TINY, "--ckpt_path", "truncated.ckpt"], "is truncated or corrupt"),
    "foreign checkpoint": (["fit", *TINY, "--ckpt_path", "foreign.ckpt"], "is not a Lightning training checkpoint"),
    "existing run directory": (["fit", *TINY], "already holds a run"),
    "unknown --grid key": (["sweep", "--config", QUICKSTART, "--out", "sweep", "--grid", "model.optimizer.foo=1,2"],
                           "model.optimizer: unknown key 'foo'; the keys are: name, lr,"),
    "non-numeric --grid value": (["sweep", "--config", QUICKSTART, "--out", "sweep", "--grid",
                                  "model.optimizer.lr=a,b"], "<class 'float'>. Got value: a"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case, finished, tmp_path, monkeypatch, capsys):
    args, words = CASES[case]
    monkeypatch.chdir(tmp_path)
    shutil.copytree(finished, tmp_path / "runs")  # the existing run each case must leave alone
    (tmp_path / "typo.yaml").write_text("trainer:\n  max_epoch: 1\n")
    last = (tmp_path / "runs" / "quickstart" / "checkpoints" / "last.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(last[: len(last) // 2])
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.ckpt")
    if case != "existing run directory":  # the others start a new run elsewhere
        args = [*args, "--trainer.logger.init_args.name", "new"] if args[0] == "fit" else args
    before = _state(tmp_path)
    status = main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, (case, err[-2000:])
    assert lines and lines[-1].startswith(("wdlab: error: ", "wdlab sweep: error: ")), (case, lines[-3:])
    assert words in lines[-1], (case, lines[-1])
    assert len(lines[-1]) < 400, (case, lines[-1])  # the reason, not a dump of every type tried
    assert "usage:" not in err, (case, err[:500])
    assert _state(tmp_path) == before, case  # nothing written, nothing touched
    assert not os.path.exists(tmp_path / "runs" / "new") and not os.path.exists(tmp_path / "sweep"), case

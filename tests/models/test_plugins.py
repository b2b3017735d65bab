"""The plug-in paths of the README: any torch model as ``model.net`` (torchvision, timm) through ``wdlab fit``,
and ``wdlab.optim.build_optimizer`` in a hand-written training loop (the README's own example, run as is)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from paths import REPO

from wdlab.cli import main

README = REPO / "README.md"
QUICK = ["fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--trainer.fast_dev_run", "true",
         "--data.init_args.batch_size", "8", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--test_after_fit", "false",
         "--trainer.callbacks+=resume_helpers.TraceSteps"]  # prints a line at every training batch


@pytest.mark.trains
def test_a_torchvision_model_as_the_net(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*QUICK, "--model.net", "torchvision.models.resnet18", "--model.net.init_args.num_classes", "10"]) == 0
    assert "TRACE step=0 " in capsys.readouterr().out  # a training batch ran


@pytest.mark.trains
def test_a_timm_model_as_the_net(tmp_path, monkeypatch, capsys):
    pytest.importorskip("timm")
    monkeypatch.chdir(tmp_path)
    net = ["--model.net", "timm.models.vision_transformer.VisionTransformer", "--model.net.init_args.img_size", "32",
           "--model.net.init_args.patch_size", "8", "--model.net.init_args.embed_dim", "32",
           "--model.net.init_args.depth", "1", "--model.net.init_args.num_heads", "2",
           "--model.net.init_args.num_classes", "10"]
    assert main([*QUICK, *net]) == 0
    assert "TRACE step=0 " in capsys.readouterr().out  # a training batch ran


def readme_example(name: str, readme: Path = README) -> str:
    """The fenced python block between ``<!-- name -->`` and ``<!-- /name -->`` in the README."""
    text = readme.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {name} -->\s*```python\n(.*?)```\s*<!-- /{name} -->", text, re.S)
    assert match, f"{readme.name} has no ```python block between <!-- {name} --> and <!-- /{name} -->"
    return match.group(1)


def _run(code: str) -> dict:
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, "README.md:plain-loop-example", "exec"), namespace)  # the README's own code
    return namespace


def test_the_readme_plain_pytorch_loop_trains_and_decays(capsys):
    code = readme_example("plain-loop-example")
    decayed = _run(code)
    losses, steps = decayed["losses"], decayed["epochs"] * len(decayed["loader"])
    assert len(losses) == steps
    assert sum(losses[-8:]) < 0.1 * sum(losses[:8])  # it trains
    assert decayed["scheduler"].last_epoch == steps  # stepped once per optimizer step
    # the same loop without decay: the decayed weights are smaller (decay acted) -- biases are not decayed
    line = re.findall(r"weight_decay=[0-9.e-]+,", code)
    assert len(line) == 1, line
    undecayed = _run(code.replace(line[0], "weight_decay=0.0,"))
    def weight_norm(model: torch.nn.Module) -> float:
        weights = [p.detach() for name, p in model.named_parameters() if name.endswith("weight")]
        return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(weights))))

    assert weight_norm(decayed["model"]) < 0.97 * weight_norm(undecayed["model"])
    assert "loss " in capsys.readouterr().out

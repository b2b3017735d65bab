"""Which parameters are decayed: the norm layers of modern models, biases and (optionally) embeddings are
recognized; the table of groups (`wdlab fit --print_decay`, and logged at the start of every fit) shows it."""

from __future__ import annotations

import pytest
from paths import REPO
from torch import nn

from wdlab.cli import main
from wdlab.optim import decay_table, param_groups


class Modern(nn.Module):
    """One of each: embedding, conv + BatchNorm, InstanceNorm (affine), GroupNorm, LayerNorm, RMSNorm,
    a linear head with bias, and a tied output weight (shared with the embedding)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        self.conv = nn.Conv2d(3, 8, 3, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.instance = nn.InstanceNorm2d(8, affine=True)
        self.group = nn.GroupNorm(2, 8)
        self.layer = nn.LayerNorm(8)
        self.rms = nn.RMSNorm(8)
        self.head = nn.Linear(8, 11)
        self.tied = nn.Linear(8, 11, bias=False)
        self.tied.weight = self.embed.weight


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {name for name, p in model.named_parameters() if id(p) in ids}


NORMS = {f"{layer}.{kind}" for layer in ("bn", "instance", "group", "layer") for kind in ("weight", "bias")}
NORMS |= {"rms.weight"}


def test_the_paper_decays_everything():
    model = Modern()
    (group,) = param_groups(model)
    assert group["name"] == "all" and _names(model, group) == {n for n, _ in model.named_parameters()}


def test_biases_and_every_norm_layer_are_exempt_on_request():
    model = Modern()
    decay, no_decay = param_groups(model, decay_bias_and_norm=False)
    assert _names(model, no_decay) == NORMS | {"head.bias"} and no_decay["weight_decay"] == 0.0
    assert _names(model, decay) == {"embed.weight", "conv.weight", "head.weight"}  # tied weight once
    assert len(decay["params"]) == 3


def test_embeddings_are_exempt_on_request_with_or_without_the_norms():
    model = Modern()
    decay, no_decay = param_groups(model, decay_embeddings=False)
    assert _names(model, no_decay) == {"embed.weight"}  # also the tied output weight, which is the same tensor
    assert "embed.weight" not in _names(model, decay) and "head.bias" in _names(model, decay)
    decay, no_decay = param_groups(model, decay_bias_and_norm=False, decay_embeddings=False)
    assert _names(model, no_decay) == NORMS | {"head.bias", "embed.weight"}
    assert _names(model, decay) == {"conv.weight", "head.weight"}


def test_the_table_counts_tensors_and_values_per_group():
    model = Modern()
    lines = decay_table(model, param_groups(model, decay_bias_and_norm=False)).splitlines()
    decay, no_decay = (line.split() for line in lines[1:])
    assert decay[:4] == ["decay", "yes", "3", f"{11 * 8 + 8 * 3 * 3 * 3 + 11 * 8:,}"]
    assert no_decay[:4] == ["no_decay", "no", str(len(NORMS) + 1), f"{8 * len(NORMS) + 11:,}"]
    assert "embed.weight (11, 8)" in lines[1]


def test_wdlab_fit_print_decay_prints_the_groups_and_trains_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--model.decay_bias_and_norm", "false",
              "--print_decay"])
    assert exit_.value.code == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(("decay ", "no_decay "))]
    assert [row[:2] for row in rows] == [["decay", "yes"], ["no_decay", "no"]]
    from wdlab.models import PreActResNet

    net = PreActResNet(depth=8, base_width=16, num_classes=10)
    norms = sum(p.numel() for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    biases = sum(p.numel() for n, p in net.named_parameters() if n.endswith("bias") and "bn" not in n)
    assert int(rows[1][3].replace(",", "")) == norms + biases
    assert int(rows[0][3].replace(",", "")) + norms + biases == sum(p.numel() for p in net.parameters())
    assert not list(tmp_path.iterdir())  # nothing written

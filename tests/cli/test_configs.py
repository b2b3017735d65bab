"""The shipped configs: every experiment config resolves, with one ``--config``, to its model, data and run name.

The experiment configs (configs/quickstart.yaml, configs/<experiment>/*.yaml) name their network and datamodule
as files of configs/models/ and configs/data/ (paths relative to the config that names them) and give only the
run name of the CLI's default TensorBoardLogger. The expected values below are written out, not read from the
component files, so a changed component (or a composition that stopped happening) fails here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from paths import REPO

from wdlab.cli import main
from wdlab.experiments.sweep import parse_value

CONFIGS = REPO / "configs"
COMPONENT_DIRS = ("models", "data")  # configs/<dir>/*.yaml are parts of configs, not configs to run
SELF_CONTAINED = {"quickstart.yaml"}  # the first config a reader sees stays whole (tests copy its text elsewhere)

# model.net per component: class and init_args as resolved
NETS = {
    "shake26_2x64d": ("wdlab.models.ShakeShake", {"depth": 26, "base_width": 64, "num_classes": 10}),
    "shake26_2x96d": ("wdlab.models.ShakeShake", {"depth": 26, "base_width": 96, "num_classes": 10}),
    "wrn28_10": ("wdlab.models.WideResNet", {"depth": 28, "widen_factor": 10, "num_classes": 1000, "dropout": 0.0}),
    "preact8_8d": ("wdlab.models.PreActResNet", {"depth": 8, "base_width": 8, "num_classes": 10}),
    "quickstart": ("wdlab.models.PreActResNet", {"depth": 8, "base_width": 16, "num_classes": 10}),
}
# data per component: class and init_args as resolved
DATA = {
    "cifar10": ("wdlab.data.CIFAR10DataModule", {"root": "data/cifar10", "batch_size": 128}),
    "imagenet32": ("wdlab.data.ImageNet32DataModule", {"root": "data/imagenet32", "batch_size": 128}),
    "builtin_1k": (
        "wdlab.data.BuiltinDataModule",
        {"batch_size": 32, "num_train": 1000, "num_test": 1000, "seed": 0, "channels_last": True},
    ),
    "quickstart": ("wdlab.data.BuiltinDataModule",
                   {"batch_size": 64, "num_train": 1600, "num_test": 1000, "seed": 0,
                    "channels_last": True}),
    "fashion_mnist": (
        "wdlab.data.FashionMNISTDataModule", {"root": "/usr/share/datasets/fashion-mnist", "batch_size": 128}
    ),
    "mnist": ("wdlab.data.MNISTDataModule", {"root": "data/mnist", "batch_size": 128}),
}
#: Data components no experiment config names yet: given on the command line (``--data configs/data/X.yaml``).
COMMAND_LINE_DATA = ("fashion_mnist", "mnist")

# config -> (net, data, logger save_dir, logger name = the run directory <save_dir>/<name>, optimizer, max_epochs)
EXPECTED = {
    "quickstart.yaml": ("quickstart", "quickstart", "runs", "quickstart", "adamwr", 35),
    **{
        f"cifar10/fig1_shake26_2x64d_{opt}_{schedule}.yaml": (
            "shake26_2x64d", "cifar10", "runs", f"fig1_shake26_2x64d_{opt}_{schedule}", opt, 100,
        )
        for opt in ("adam", "adamw")
        for schedule in ("cosine", "fixed", "stepdrop")
    },
    **{
        f"cifar10/{fig}_shake26_2x64d_{opt}.yaml": (
            "shake26_2x64d", "cifar10", "runs", f"{fig}_shake26_2x64d_{opt}", opt, 100,
        )
        for fig, opts in (("fig2", ("adam", "adamw", "sgd", "sgdw")), ("fig3", ("adam", "adamw")))
        for opt in opts
    },
    **{
        f"cifar10/fig4_shake26_2x96d_{opt}.yaml": (
            "shake26_2x96d", "cifar10", "runs", f"fig4_shake26_2x96d_{opt}", opt, 1800,
        )
        for opt in ("adamw", "adamwr", "sgdw", "sgdwr")
    },
    **{
        f"imagenet32/wrn28_{opt}.yaml": ("wrn28_10", "imagenet32", "runs", f"imagenet32_wrn28_{opt}", opt, 150)
        for opt in ("adamw", "adamwr", "sgdwr")
    },
    **{
        f"fig2_small/{opt}.yaml": ("preact8_8d", "builtin_1k", "runs/fig2_small", opt, opt, 32)
        for opt in ("adam", "adamw", "sgd", "sgdw")
    },
}  # fmt: skip
# Fig. 1: one config per schedule (the paper's fixed lr, step-drop x0.1 at epochs 30/60/80, cosine)
FIG1_SCHEDULES = {"fixed": ("constant", None), "stepdrop": ("multistep", [30, 60, 80]), "cosine": ("cosine", None)}
SWEEP_PRESETS = {k for k in EXPECTED if k.startswith(("cifar10/fig1", "cifar10/fig2", "cifar10/fig3", "fig2_small/"))}


#: Folders whose configs are checked by their own tests below (the replication suite has its own components).
SUITES = ("replication",)


def _is_component(path: Path) -> bool:
    """A component is one class (``class_path`` at its top level), named by experiment configs."""
    return "class_path" in (yaml.safe_load(path.read_text()) or {})


def _experiment_configs() -> list[str]:
    return sorted(
        str(p.relative_to(CONFIGS))
        for p in CONFIGS.rglob("*.yaml")
        if p.relative_to(CONFIGS).parts[0] not in (*COMPONENT_DIRS, *SUITES)
    )


def resolve(config: str | Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    """``wdlab fit --config CONFIG [EXTRA...] --print_config``, in-process, as a dict."""
    capsys.readouterr()
    try:
        code = main(["fit", "--config", str(config), *extra, "--print_config"])
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    assert code in (0, None), captured.err
    return yaml.safe_load(captured.out)


def test_every_experiment_config_is_listed_and_every_component_is_used():
    assert _experiment_configs() == sorted(EXPECTED)
    raw = [yaml.safe_load((CONFIGS / name).read_text()) for name in EXPECTED if name not in SELF_CONTAINED]
    named = {config["model"]["net"] for config in raw} | {config["data"] for config in raw}
    named |= {f"../data/{name}.yaml" for name in COMMAND_LINE_DATA}
    components = {f"../{p.parent.name}/{p.name}" for d in COMPONENT_DIRS for p in (CONFIGS / d).glob("*.yaml")}
    assert components and components <= named, f"unused components: {sorted(components - named)}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_experiment_config_resolves_to_its_components(name, capsys):
    net, data, save_dir, run_name, optimizer, max_epochs = EXPECTED[name]
    path = CONFIGS / name
    text = path.read_text()
    assert text.startswith("#"), "each config states in a comment what it is and what the paper reports"
    raw = yaml.safe_load(text)

    # The file itself composes: no copy of the logger, network or datamodule block.
    assert set(raw["trainer"]["logger"]) == {"init_args"}, "the logger's class and defaults are the CLI's"
    assert "default_hp_metric" not in raw["trainer"]["logger"]["init_args"]
    if name not in SELF_CONTAINED:
        assert raw["model"]["net"] == f"../models/{net}.yaml"
        assert raw["data"] == f"../data/{data}.yaml"

    config = resolve(path, capsys)
    assert config["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.TensorBoardLogger"
    logger = config["trainer"]["logger"]["init_args"]
    assert (logger["save_dir"], logger["name"], logger["default_hp_metric"]) == (save_dir, run_name, False)
    net_class, net_args = NETS[net]
    assert config["model"]["net"]["class_path"] == net_class
    assert {k: config["model"]["net"]["init_args"][k] for k in net_args} == net_args
    data_class, data_args = DATA[data]
    assert config["data"]["class_path"] == data_class
    assert {k: config["data"]["init_args"][k] for k in data_args} == data_args
    assert config["model"]["optimizer"]["name"] == optimizer
    if name.startswith("cifar10/fig1_"):
        schedule, milestones = FIG1_SCHEDULES[name.removesuffix(".yaml").rsplit("_", 1)[1]]
        assert config["model"]["optimizer"]["schedule"] == schedule
        assert config["model"]["optimizer"].get("milestones") == milestones
    assert config["trainer"]["max_epochs"] == max_epochs
    # wdlab sweep reads its preset from the experiment file itself (yaml.safe_load, no composition)
    if name in SWEEP_PRESETS:
        assert raw["sweep"]["grid"] and config["sweep"] == raw["sweep"]
    else:
        assert "sweep" not in raw and config["sweep"] is None


@pytest.mark.parametrize("data", COMMAND_LINE_DATA)
def test_a_data_component_on_the_command_line_replaces_the_quickstart_data(data, capsys):
    config = resolve(CONFIGS / "quickstart.yaml", capsys, "--data", str(CONFIGS / "data" / f"{data}.yaml"))
    data_class, data_args = DATA[data]
    assert config["data"]["class_path"] == data_class
    assert {k: config["data"]["init_args"][k] for k in data_args} == data_args
    assert config["data"]["init_args"]["channels_last"] is True  # the quickstart's setting is carried over


def test_component_paths_are_relative_to_the_config_not_the_working_directory(tmp_path, monkeypatch, capsys):
    name = "cifar10/fig4_shake26_2x96d_sgdwr.yaml"
    from_repo = resolve(CONFIGS / name, capsys)
    monkeypatch.chdir(tmp_path)
    assert resolve(CONFIGS / name, capsys) == from_repo
    assert resolve(os.path.relpath(CONFIGS / name, tmp_path), capsys) == from_repo
    assert Path.cwd() == tmp_path  # parsing a config visits its directory and comes back
    assert from_repo["model"]["net"]["init_args"]["base_width"] == 96
    assert from_repo["data"]["init_args"]["root"] == "data/cifar10"  # still relative to the working directory


# -- the replication suite (docs/replication/) ----------------------------------------------------------------
REPLICATION = sorted(p for p in (CONFIGS / "replication").glob("*.yaml") if not _is_component(p))


@pytest.mark.parametrize("path", REPLICATION, ids=lambda p: p.name)
def test_replication_configs_resolve_and_their_fig2_presets_can_answer(path, capsys):
    text = path.read_text()
    assert text.startswith("#"), "each config states in a comment what it is, why these sizes, and its commands"
    raw = yaml.safe_load(text)
    config = resolve(path, capsys)
    assert config["model"]["net"]["class_path"].startswith("wdlab.models.")
    assert config["data"]["class_path"] == "wdlab.data.BuiltinDataModule"  # runs anywhere, no files needed
    if path.name.startswith("fig2_"):  # the Fig. 2 panels: a grid a reviewer would accept (issue 12)
        grid = raw["sweep"]["grid"]
        decays = [float(parse_value(v) if isinstance(v, str) else v) for v in grid["model.optimizer.weight_decay"]]
        assert 0.0 in decays and len([d for d in decays if d > 0]) >= 4, "a lambda = 0 column and a decay axis"
        assert len(grid["model.optimizer.lr"]) >= 4 and raw["sweep"]["seeds"] >= 3
        assert config["data"]["init_args"]["num_test"] >= 5000  # binomial noise under 0.7 points

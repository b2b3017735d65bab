"""What the sweep tests share: the tiny cell every test sweep runs (:func:`cell_config`, :data:`BASE`), its
2 x 2 grid (:data:`GRID`), running ``wdlab sweep`` (:func:`sweep`), reading ``results.csv`` (:func:`results`) and
the two cell losses of earlier versions, rebuilt in a study (:func:`lost_cells`)."""

from __future__ import annotations

import csv
import itertools
import os
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

#: the sweep tests' optimizer (``model.optimizer`` of :data:`BASE`)
SGDW = "{name: sgdw, lr: 0.05, weight_decay: 0.001, schedule: cosine}"


def cell_config(optimizer: str = SGDW, data: str = "") -> str:
    """A tiny run as a config file: PreActResNet-8 of width 4 on 64 built-in images, 2 steps per epoch, a few
    seconds a cell (most of it the start of a Python process). ``optimizer``: ``model.optimizer`` as a YAML
    flow mapping; ``data``: more ``init_args`` of the data (e.g. ``", augment: false"``)."""
    return f"""\
seed_everything: 0
trainer:
  max_epochs: 1
  accelerator: cpu
  devices: 1
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
model:
  net:
    class_path: wdlab.models.PreActResNet
    init_args: {{depth: 8, base_width: 4, num_classes: 10}}
  optimizer: {optimizer}
data:
  class_path: wdlab.data.BuiltinDataModule
  init_args: {{batch_size: 32, num_train: 64, num_test: 64, seed: 0{data}}}
snapshots: {{save: false}}
"""


#: the sweep tests' cell
BASE = cell_config()
#: a 2 x 2 grid of BASE: four cells
GRID = ["--grid", "model.optimizer.lr=0.1,0.05", "--grid", "model.optimizer.weight_decay=0.001,0.002"]


def sweep(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``wdlab sweep ARGS`` in ``cwd`` (one thread per cell unless ``env`` says otherwise), its output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if env is None else env
    return subprocess.run(
        [sys.executable, "-m", "wdlab", "sweep", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def results(out: Path) -> list[dict[str, str]]:
    """The rows of ``out/results.csv``, as written (strings)."""
    with (out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def lost_cells(study: optuna.Study, grid: dict[str, list[float]]) -> None:
    """The two losses of earlier versions, seed 0: the first grid point's cell killed, then pruned as a
    duplicate (a second worker had picked it); the second one pruned twice (two workers picked it at once
    and each pruned itself). Built with Optuna's own API as those versions' GridSampler left them: with its
    ``search_space`` and ``grid_id`` system attributes, so that it counts those points as visited."""
    space = {**grid, "seed_everything": [0]}
    sampler = optuna.samplers.GridSampler(space, seed=0)  # the old engine's sampler and seed
    grids = sampler._all_grids  # private: which grid id the old engine gave each point
    first, second = itertools.islice(itertools.product(*grid.values()), 2)
    for state, point in ((TrialState.FAIL, first), (TrialState.PRUNED, first), (TrialState.PRUNED, second),
                         (TrialState.PRUNED, second)):  # fmt: skip
        params = {**dict(zip(grid, point, strict=True)), "seed_everything": 0}
        grid_id = grids.index(tuple(params[key] for key in sorted(params)))
        study.add_trial(create_trial(
            state=state, params=params, distributions={key: CategoricalDistribution(v) for key, v in space.items()},
            system_attrs={"search_space": {key: space[key] for key in sorted(space)}, "grid_id": grid_id},
        ))




def _writes_cell_log(pid: int) -> bool:
    """Whether process ``pid``'s stdout is a cell's ``cell.log`` (a cell forked from a server, once set up)."""
    try:
        return os.readlink(f"/proc/{pid}/fd/1").endswith("/cell.log")
    except OSError:
        return False


def cell_processes(pid: int) -> tuple[list[int], list[int]]:
    """The processes of worker ``pid``'s cells: (every descendant that is part of running them -- cell servers
    and cells --, the cells that are running). A cell is a ``wdlab fit`` child of the worker (``--launcher fresh``)
    or a child forked from one of its cell servers (``--launcher preloaded``) that writes a ``cell.log``; the
    configuration check before the first cell (a child of the slot-0 server that writes a temporary log, or a
    ``cell_server --check`` process) is neither."""
    parent: dict[int, int] = {}
    command: dict[int, list[bytes]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
    servers = [p for p, pp in parent.items() if pp == pid and b"wdlab.cli.cell_server" in command.get(p, [])]
    fresh = [p for p, pp in parent.items() if pp == pid and b"fit" in command.get(p, [])
             and b"--print_config" not in command.get(p, [])]
    forked = [p for p, pp in parent.items() if pp in servers]
    return [*servers, *fresh, *forked], [*fresh, *(p for p in forked if _writes_cell_log(p))]

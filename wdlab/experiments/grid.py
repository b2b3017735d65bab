"""The grid language of a sweep: values as typed, ``--grid`` options, config presets, cell names, the spec.

A sweep is :class:`SweepSpec`: base configs, a grid ``{key: [values]}`` (keys as ``wdlab fit`` spells
them), seeds and the options every cell gets. Its cells are the grid's points times the seeds, each
named for its run directory (:func:`cell_names`) and run as ``wdlab fit`` with :meth:`SweepSpec.fit_args`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SEED_KEY = "seed_everything"

__all__ = [
    "SEED_KEY",
    "SweepError",
    "SweepSpec",
    "cell_names",
    "grid_preset",
    "parse_grid",
    "parse_value",
]


class SweepError(ValueError):
    """A sweep that cannot start as asked (one line, names the fix)."""


def parse_value(text: str) -> int | float | str | bool:
    """A grid value as typed: an int, a float (``1e-3``, ``2**-10``), true/false, or a string."""
    text = text.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    power = re.fullmatch(r"([+-]?\d+(?:\.\d*)?)\*\*([+-]?\d+)", text)
    if power:
        return float(power.group(1)) ** int(power.group(2))
    try:
        return float(text)
    except ValueError:
        pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_grid(options: Sequence[str]) -> dict[str, list[Any]]:
    """``--grid key=v1,v2,...`` options -> {key: [values]} (keys as ``wdlab fit`` spells them)."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        key, sep, values = option.partition("=")
        key = key.strip().removeprefix("--")
        if not sep or not key or not values.strip():
            raise SweepError(f"--grid {option!r}: write it as KEY=V1,V2,... e.g. --grid model.optimizer.lr=0.1,0.05")
        parsed = [parse_value(v) for v in values.split(",") if v.strip()]
        if len(set(map(repr, parsed))) != len(parsed):
            raise SweepError(f"--grid {option!r} repeats a value: give each value once")
        grid[key] = parsed
    return grid


def parse_seeds(value: Any, where: str = "--seeds") -> list[int]:
    """The seeds of a sweep: ``K`` (seeds 0..K-1), ``A-B`` (A..B inclusive), ``A,B,C``, or a list of ints.

    Fresh seeds (e.g. ``100-104``) let a new experiment avoid the seeds an earlier one used.
    """
    text = ",".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value).strip()
    try:
        if re.fullmatch(r"\d+", text):
            seeds = list(range(int(text)))
        elif re.fullmatch(r"\d+\s*-\s*\d+", text):
            first, last = (int(v) for v in text.split("-"))
            seeds = list(range(first, last + 1))
        else:
            seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise SweepError(
            f"{where} {value!r}: give a count K (seeds 0..K-1), a range A-B, or distinct seeds A,B,C (>= 0)"
        )
    return seeds


def grid_preset(configs: Sequence[Path]) -> tuple[dict[str, list[Any]], list[int] | None]:
    """The ``sweep:`` section of the configs (``grid: {key: [values]}``, ``seeds``: :func:`parse_seeds`);
    later files win."""
    grid: dict[str, list[Any]] = {}
    seeds: list[int] | None = None
    for path in configs:
        try:
            content = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise SweepError(f"cannot read config {path}: {error}") from None
        preset = content.get("sweep") if isinstance(content, dict) else None
        if not preset:
            continue
        for key, values in (preset.get("grid") or {}).items():
            if not isinstance(values, list) or not values:
                raise SweepError(f"{path}: sweep.grid.{key} must be a non-empty list of values")
            grid[str(key)] = [parse_value(v) if isinstance(v, str) else v for v in values]
        if preset.get("seeds") is not None:
            seeds = parse_seeds(preset["seeds"], f"{path}: sweep.seeds")
    return grid, seeds


def _format(value: Any) -> str:
    return format(value, ".6g") if isinstance(value, float) else str(value)


def cell_names(keys: Sequence[str], cells: Sequence[tuple[Any, ...]]) -> dict[tuple[Any, ...], str]:
    """A directory name per cell, ``lr_0.5__weight_decay_0.00025__seed_0`` (short keys where unique)."""
    short = [k.split(".")[-1] if k != SEED_KEY else "seed" for k in keys]
    if len(set(short)) != len(short):
        short = [k.replace(".", "-") for k in keys]
    names = {
        cell: "__".join(f"{s}_{_format(v)}" for s, v in zip(short, cell, strict=True)).replace("/", "-")
        for cell in cells
    }
    if len(set(names.values())) != len(names):  # values equal to 6 digits: fall back to indices
        names = {cell: f"cell_{i:04d}" for i, cell in enumerate(cells)}
    return names


@dataclass
class SweepSpec:
    """Everything one sweep runs: base configs, the grid, seeds and the options every cell gets."""

    configs: list[Path]
    grid: dict[str, list[Any]]
    seeds: list[int]
    passthrough: list[str]
    out: Path
    keys: list[str] = field(init=False)
    cells: list[tuple[Any, ...]] = field(init=False)
    names: dict[tuple[Any, ...], str] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = [*self.grid, SEED_KEY]
        self.cells = list(itertools.product(*self.grid.values(), self.seeds))
        self.names = cell_names(self.keys, self.cells)

    def search_space(self) -> dict[str, list[Any]]:
        return {**self.grid, SEED_KEY: list(self.seeds)}

    def params(self, cell: tuple[Any, ...]) -> dict[str, Any]:
        """The cell as Optuna parameters ``{key: value}``."""
        return dict(zip(self.keys, cell, strict=True))

    def cell_of(self, params: dict[str, Any]) -> tuple[Any, ...] | None:
        try:
            cell = tuple(params[k] for k in self.keys)
        except KeyError:
            return None
        return cell if cell in self.names else None

    def fit_args(self, cell: tuple[Any, ...]) -> list[str]:
        """The ``wdlab fit`` arguments of a cell (after the ``fit`` subcommand)."""
        args: list[str] = []
        for config in self.configs:
            args += ["--config", str(config)]
        args += self.passthrough
        for key, value in zip(self.keys, cell, strict=True):
            args += [f"--{key}", _format(value) if not isinstance(value, bool) else str(value).lower()]
        args += [
            "--trainer.logger.init_args.save_dir", str(self.out),
            "--trainer.logger.init_args.name", self.names[cell],
            "--ckpt_path", "auto",  # an interrupted or failed cell continues from its last.ckpt
        ]  # fmt: skip
        return args

    def fingerprint(self) -> str:
        """What makes two invocations the same sweep: what the configs say, the grid, seeds, pass-through options.

        A config counts by its parsed content without its ``sweep:`` preset (the grid and seeds it resolves to
        are in the fingerprint themselves): comments can be corrected without orphaning a saved study.
        """
        contents = [_content_hash(p) for p in self.configs]
        return self._fingerprint(contents)

    def legacy_fingerprint(self) -> str:
        """The fingerprint of sweeps recorded before comments were ignored: each config's bytes."""
        return self._fingerprint([hashlib.sha256(p.read_bytes()).hexdigest() for p in self.configs])

    def _fingerprint(self, contents: list[str]) -> str:
        return json.dumps(
            {"configs": contents, "grid": self.grid, "seeds": self.seeds, "passthrough": self.passthrough},
            sort_keys=True,
            default=str,
        )


def _content_hash(path: Path) -> str:
    content = yaml.safe_load(path.read_text()) or {}
    if isinstance(content, dict):
        content = {key: value for key, value in content.items() if key != "sweep"}
    return "yaml:" + hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()

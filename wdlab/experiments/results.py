"""The results format: what a sweep writes and a report reads.

* ``results.csv`` (:data:`RESULTS_CSV`): one row per sweep cell and seed. Columns: the grid keys as
  ``wdlab fit`` spells them (exact ``repr`` of float values, so a reader recovers them bit for
  bit), ``seed``, then :data:`RESULT_COLUMNS`. Written atomically (:func:`write_results`).
* TensorBoard event files of a run (:func:`read_scalars`, :func:`find_runs`, :func:`epoch_of_step`).

No Lightning here: CSV and event files only.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wdlab._io import atomic_write

__all__ = [
    "METRIC_COLUMNS",
    "REPORT_DIR",
    "RESULTS_CSV",
    "RESULT_COLUMNS",
    "SEED_COLUMN",
    "TENSORBOARD_DIR",
    "best_cell",
    "cell_means",
    "complete_rows",
    "epoch_of_step",
    "find_runs",
    "grid_columns",
    "read_results",
    "read_scalars",
    "write_results",
]

RESULTS_CSV = "results.csv"
SEED_COLUMN = "seed"
#: The columns after the grid keys and ``seed``, in order.
RESULT_COLUMNS = (
    "optimizer",
    "state",
    "final_test_err",
    "best_test_err",
    "final_train_loss",
    "epochs",
    "wall_s",
    "run_dir",
    "error",
    "decoupled",
    "decay_scaling",
    "final_val_err",
)
#: The numeric result columns (what a heatmap can show).
METRIC_COLUMNS = ("final_test_err", "best_test_err", "final_train_loss", "final_val_err")
REPORT_DIR = "report"  # a report's default output directory, inside the first path given
TENSORBOARD_DIR = "tensorboard"  # TensorBoard events with a report's figures, inside its output directory


class ResultsError(ValueError):
    """Results that cannot be read (one line, names the fix)."""


# -- results.csv -------------------------------------------------------------------------------
def _grid_value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _metric(value: Any) -> str:
    if value is None or value == "":
        return ""
    return "nan" if isinstance(value, float) and math.isnan(value) else f"{float(value):.6g}"


def write_results(
    path: str | os.PathLike[str], grid_keys: Sequence[str], rows: Sequence[tuple[Sequence[Any], Mapping[str, Any]]]
) -> Path:
    """Write ``results.csv``: each row is (the cell's grid values then its seed, {result column: value}).

    Missing or ``None`` values are written as empty fields; ``wall_s`` with one decimal, the metrics
    with 6 significant digits.
    """
    path = Path(path)
    with atomic_write(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*grid_keys, SEED_COLUMN, *RESULT_COLUMNS])
        for cell, record in rows:
            row = [_grid_value(v) for v in cell]
            for column in RESULT_COLUMNS:
                value = record.get(column)
                if column in METRIC_COLUMNS:
                    row.append(_metric(value))
                elif column == "wall_s":
                    row.append("" if value is None else f"{value:.1f}")
                elif column == "decoupled":  # the registry entry's flag: 1 or 0, empty when unknown
                    row.append("" if value is None else str(int(bool(value))))
                else:
                    row.append("" if value is None else str(value))
            writer.writerow(row)
    return path


def read_results(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a sweep's ``results.csv`` (a directory is taken to hold one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_CSV
    if not path.is_file():
        raise ResultsError(f"{path} does not exist: give a sweep directory written by 'wdlab sweep' or its results.csv")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def complete_rows(rows: Sequence[Mapping[str, str]], metric: str = "final_test_err") -> list[dict[str, str]]:
    """The rows of ``results.csv`` whose cell completed and has ``metric``."""
    return [dict(row) for row in rows if row["state"] == "complete" and row.get(metric) not in ("", None)]


def cell_means(
    rows: Sequence[Mapping[str, str]], keys: Sequence[str], metric: str = "final_test_err"
) -> dict[tuple[float, ...], float]:
    """Mean ``metric`` over seeds per cell (the values of the grid ``keys``), for the cells whose every seed
    completed with a value; a cell with a failed, pending or empty seed has no mean."""
    cells: dict[tuple[float, ...], list[float | None]] = {}
    for row in rows:
        ok = row["state"] == "complete" and row.get(metric) not in ("", None)
        cells.setdefault(tuple(float(row[k]) for k in keys), []).append(float(row[metric]) if ok else None)
    return {cell: sum(v) / len(v) for cell, v in cells.items()  # type: ignore[arg-type,misc]
            if all(x is not None for x in v)}


def best_cell(
    rows: Sequence[Mapping[str, str]], lr_key: str, decay_key: str, metric: str = "final_test_err"
) -> tuple[tuple[float, float], float] | None:
    """The (lr, decay) cell of lowest mean ``metric`` over seeds (:func:`cell_means`) and that mean; ties go to
    the smaller decay, then the smaller lr. None when no cell has all its seeds complete."""
    means = cell_means(rows, (lr_key, decay_key), metric)
    if not means:
        return None
    lr, decay = min(means, key=lambda cell: (means[cell], cell[1], cell[0]))
    return (lr, decay), means[(lr, decay)]


def grid_columns(columns: Sequence[str]) -> list[str]:
    """The sweep's grid columns (and ``seed``): those up to ``seed`` in results.csv."""
    return list(columns[: columns.index(SEED_COLUMN) + 1]) if SEED_COLUMN in columns else []


# -- event files ---------------------------------------------------------------------------------
def read_scalars(run_dir: str | os.PathLike[str]) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the TensorBoard event files directly in ``run_dir``: tag -> [(step, value)].

    A resumed run appends a new event file and may log some steps again: the later file wins for a
    repeated (tag, step), so each step appears once, in step order.
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    series: dict[str, dict[int, float]] = {}
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*"), key=_event_file_order):
        for event in EventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = float(value.simple_value)
                elif value.HasField("tensor") and value.tensor.dtype in (1, 2):  # DT_FLOAT, DT_DOUBLE
                    array = _tensor_values(value.tensor)
                    if array.size != 1:
                        continue
                    number = float(array.reshape(()))
                else:
                    continue
                series.setdefault(value.tag, {})[int(event.step)] = number
    return {tag: sorted(points.items()) for tag, points in series.items()}


def _event_file_order(path: Path) -> tuple[float, str]:
    # events.out.tfevents.<unix time>.<host>.<pid>.<n>: order by creation time, not by host name
    parts = path.name.split(".")
    try:
        return float(parts[3]), path.name
    except (IndexError, ValueError):
        return math.inf, path.name


def _tensor_values(tensor: Any) -> np.ndarray:
    from tensorboard.util import tensor_util

    return np.asarray(tensor_util.make_ndarray(tensor), dtype=np.float64)


def find_runs(root: str | os.PathLike[str]) -> list[Path]:
    """``root`` and every directory below it that holds TensorBoard event files (a run), sorted."""
    root = Path(root)
    runs = {path.parent for path in root.rglob("events.out.tfevents.*")}
    # a report's own TensorBoard folder holds images, not a run
    return sorted(run for run in runs if not (run.name == TENSORBOARD_DIR and run.parent.name == REPORT_DIR))


def epoch_of_step(scalars: dict[str, list[tuple[int, float]]]) -> dict[int, int]:
    """Lightning logs ``epoch`` (0-based) next to every logged step: step -> epochs completed then."""
    return {step: round(value) + 1 for step, value in scalars.get("epoch", [])}

"""``wdlab report``: heatmaps with coupling statistics from sweeps and learning/anytime curves from runs.

The library code is :mod:`wdlab.experiments.report`; this module parses the command line, prints one
block per heatmap panel (slope with its bootstrap 95 % interval, argmin slope, headroom, basin, verdict)
and reports bad input through :func:`wdlab.cli.errors.report_errors`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from wdlab.cli.errors import report_errors
from wdlab.experiments.report import (
    BASIN_POINTS,
    COUPLING_CSV,
    HEATMAP_PNG,
    OPTIMA_CSV,
    write_curves_report,
    write_sweep_report,
)
from wdlab.experiments.results import (
    METRIC_COLUMNS,
    REPORT_DIR,
    RESULTS_CSV,
    TENSORBOARD_DIR,
    ResultsError,
    find_runs,
)

PROG = "wdlab report"


class _InputError(ValueError):
    """A path or option the report cannot use."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Heatmaps from sweeps (one panel per optimizer, with the basin, the per-row optimum decay, "
        "the coupling slope with a bootstrap 95 percent interval over seeds, and a verdict) and learning/anytime "
        "curves from runs, as PNGs and TensorBoard images.",
    )
    parser.add_argument("paths", nargs="+", help="sweep directories (with results.csv) and/or directories of runs")
    parser.add_argument("--out", help="output directory (default: the first path's report/ folder)")
    parser.add_argument(
        "--metric", default="final_test_err", choices=METRIC_COLUMNS, help="heatmap colour (default %(default)s)"
    )
    parser.add_argument("--top", type=int, default=10, help="best cells used for the top-k correlation (default 10)")
    parser.add_argument("--lr_key", help="learning-rate column (default: the grid column ending in 'lr')")
    parser.add_argument("--decay_key", help="weight-decay column (default: the grid column ending in 'weight_decay')")
    parser.add_argument(
        "--coupled", action="append", default=[], metavar="OPTIMIZER[,...]",
        help="optimizer names (results.csv's optimizer column) whose decay is L2, for the verdict; "
        "adam and sgd are known, as is every registry entry",
    )  # fmt: skip
    parser.add_argument(
        "--decoupled", action="append", default=[], metavar="OPTIMIZER[,...]",
        help="optimizer names whose decay is decoupled, for the verdict; adamw, sgdw, adamwr, sgdwr are known",
    )  # fmt: skip
    parser.add_argument(
        "--basin_margin", type=float, default=BASIN_POINTS, metavar="POINTS",
        help="the basin: cells within max(POINTS percentage points, 2 standard errors of the best cell) of the "
        "best (default %(default)g)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    return report_errors(PROG, (ResultsError, _InputError), lambda: _report(args))


def _names(values: Sequence[str]) -> set[str]:
    return {name.strip() for value in values for name in value.split(",") if name.strip()}


def _number(value: float, digits: int = 2) -> str:
    return f"{value:+.{digits}f}" if math.isfinite(value) else "n/a"


def _report(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise _InputError("--top must be at least 1")
    if not (args.basin_margin >= 0 and math.isfinite(args.basin_margin)):
        raise _InputError("--basin_margin must be a number of percentage points >= 0")
    coupled, decoupled = _names(args.coupled), _names(args.decoupled)
    if coupled & decoupled:
        raise _InputError(f"{', '.join(sorted(coupled & decoupled))} named both --coupled and --decoupled")
    sweeps, runs = [], []
    for raw in args.paths:
        path = Path(raw)
        if (path / RESULTS_CSV).is_file() or (path.is_file() and path.name.endswith(".csv")):
            sweeps.append(path)
        elif path.is_dir():
            found = find_runs(path)
            if not found:
                raise _InputError(f"{path} holds neither results.csv nor TensorBoard event files")
            runs.extend(found)
        else:
            raise _InputError(f"{path} does not exist")
    first = Path(args.paths[0])
    out = Path(args.out) if args.out else (first.parent if first.is_file() else first) / REPORT_DIR
    if sweeps:
        results = write_sweep_report(sweeps, out, args.metric, args.top, args.lr_key, args.decay_key,
                                     coupled=coupled, decoupled=decoupled, basin_points=args.basin_margin)
        for heatmap, stats in results:
            interval = (f"95% interval [{_number(stats.slope_lo)}, {_number(stats.slope_hi)}]"
                        if math.isfinite(stats.slope_lo) else "no interval")
            units = " pp" if heatmap.scale == 100 else ""
            headroom = heatmap.headroom()
            print(f"{heatmap.title}: coupling slope {stats.slope:+.2f} ({stats.rows} lr rows), "
                  f"top-{stats.top_k} correlation {_number(stats.correlation)}, {interval} over {stats.seeds} "
                  f"seed{'s' if stats.seeds != 1 else ''}")
            print(f"  argmin slope {stats.argmin_slope:+.2f}, {stats.edge_rows} edge rows, headroom "
                  f"{f'{headroom:+.2f}{units}' if math.isfinite(headroom) else 'n/a (no decay-0 column)'}, "
                  f"basin {int(heatmap.basin(args.basin_margin).sum())} cells within "
                  f"{heatmap.basin_margin(args.basin_margin) * heatmap.scale:.2f}{units} of the best")
            print(f"  verdict ({stats.decay_type or 'decay type unknown'}): {stats.verdict}")
        print(f"wrote {out / HEATMAP_PNG}, {out / COUPLING_CSV} and {out / OPTIMA_CSV}")
    if runs:
        for path in write_curves_report(runs, out):
            print(f"wrote {path}")
    print(f"TensorBoard images: tensorboard --logdir {out / TENSORBOARD_DIR}")
    return 0

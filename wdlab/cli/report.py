"""``wdlab report``: heatmaps with coupling statistics from sweeps and learning/anytime curves from runs.

The library code is :mod:`wdlab.experiments.report`; this module parses the command line, prints one
block per heatmap panel (:func:`~wdlab.experiments.report.describe_panel`: slope, its three intervals,
the rows left out, headroom, basin, verdict) and one line per family pair, and reports bad input
through :func:`wdlab.cli.errors.report_errors`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from wdlab.cli.errors import report_errors
from wdlab.experiments.heatmaps import BASIN_POINTS
from wdlab.experiments.report import (
    COUPLING_CSV,
    HEATMAP_PNG,
    OPTIMA_CSV,
    PAIRS_CSV,
    describe_pair,
    describe_panel,
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
from wdlab.experiments.rules import RESAMPLE_READINGS, Rules

PROG = "wdlab report"


class _InputError(ValueError):
    """A path or option the report cannot use."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Heatmaps from sweeps (one panel per optimizer, with the basin, the per-row optimum decay, "
        "the coupling slope with 95 percent intervals that resample whole seeds, per-seed slopes and per-cell "
        "seeds, and a verdict with an equivalence margin; the paired difference of each decoupled panel and "
        "the L2 panel of its family) and learning/anytime curves from runs, as PNGs and TensorBoard images.",
    )
    defaults = Rules()
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
        help="optimizer names (results.csv's optimizer column) whose decay is L2, for the verdict; needed only "
        "where results.csv has no decoupled column (sweeps before wdlab recorded it); adam and sgd are known",
    )  # fmt: skip
    parser.add_argument(
        "--decoupled", action="append", default=[], metavar="OPTIMIZER[,...]",
        help="optimizer names whose decay is decoupled, for the verdict (as --coupled); adamw, sgdw, adamwr, "
        "sgdwr are known",
    )  # fmt: skip
    parser.add_argument(
        "--pair", action="append", default=[], metavar="DECOUPLED=L2",
        help="compare the panel of optimizer DECOUPLED with that of L2 seed by seed (pairs.csv); sgdw=sgd and "
        "adamw=adam are built in",
    )  # fmt: skip
    parser.add_argument("--margin", type=float, default=defaults.margin,
                        help="equivalence margin m on the slope: decoupled inside (-m, +m), coupled below -m "
                        "(default %(default)g)")
    parser.add_argument("--health_loss_ratio", type=float, default=defaults.health_loss_ratio,
                        help="a row enters the slope when its decay-0 cell's final training loss is at most this "
                        "times the panel's lowest (default %(default)g)")
    parser.add_argument("--health_seed_spread", type=float, default=100 * defaults.health_seed_spread,
                        metavar="POINTS", help="... and its decay-0 seeds lie within POINTS percentage points "
                        "(default %(default)g)")
    parser.add_argument("--collapse", type=float, default=100 * defaults.collapse, metavar="POINTS",
                        help="a row optimum next to a cell POINTS worse than the row's best is censored "
                        "(default %(default)g)")
    parser.add_argument("--min_rows", type=int, default=defaults.min_rows,
                        help="fewer usable lr rows: undecided (default %(default)s)")
    parser.add_argument("--min_seeds", type=int, default=defaults.min_seeds,
                        help="fewer seeds: undecided (default %(default)s)")
    parser.add_argument(
        "--resample_reading", choices=RESAMPLE_READINGS, default=defaults.resample_reading,
        help="what an interval's resample (or one seed) does with a used row whose optimum it censors: argmin "
        "keeps the row at its argmin, drop leaves it out of that resample, reselect applies the row rules again "
        "in every resample (default %(default)s)",
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


def _report(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise _InputError("--top must be at least 1")
    if not (args.basin_margin >= 0 and math.isfinite(args.basin_margin)):
        raise _InputError("--basin_margin must be a number of percentage points >= 0")
    coupled, decoupled = _names(args.coupled), _names(args.decoupled)
    if coupled & decoupled:
        raise _InputError(f"{', '.join(sorted(coupled & decoupled))} named both --coupled and --decoupled")
    try:
        rules = Rules(margin=args.margin, health_loss_ratio=args.health_loss_ratio,
                      health_seed_spread=args.health_seed_spread / 100, collapse=args.collapse / 100,
                      min_rows=args.min_rows, min_seeds=args.min_seeds, resample_reading=args.resample_reading)
    except ValueError as error:
        raise _InputError(f"--{str(error).split()[0]}: {error}") from None
    families = {}
    for pair in args.pair:
        left, sep, right = pair.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise _InputError(f"--pair {pair!r}: write it as DECOUPLED=L2, e.g. --pair lionw=lion")
        families[left.strip()] = right.strip()
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
        report = write_sweep_report(sweeps, out, args.metric, args.top, args.lr_key, args.decay_key,
                                    coupled=coupled, decoupled=decoupled, basin_points=args.basin_margin,
                                    rules=rules, families=families)
        for heatmap, stats in report.panels:
            print("\n".join(describe_panel(heatmap, stats, args.basin_margin)))
        for pair in report.pairs:
            print(describe_pair(pair))
        print(f"wrote {out / HEATMAP_PNG}, {out / COUPLING_CSV}, {out / OPTIMA_CSV} and {out / PAIRS_CSV}")
    if runs:
        for path in write_curves_report(runs, out):
            print(f"wrote {path}")
    print(f"TensorBoard images: tensorboard --logdir {out / TENSORBOARD_DIR}")
    return 0

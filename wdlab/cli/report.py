"""``wdlab report``: heatmaps from sweeps and learning/anytime curves from runs (:mod:`wdlab.experiments.report`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from wdlab.cli.errors import report_errors
from wdlab.experiments.report import COUPLING_CSV, HEATMAP_PNG, write_curves_report, write_sweep_report
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
        description="Heatmaps from sweeps (one panel per optimizer, with coupling numbers) and learning/anytime "
        "curves from runs, as PNGs and TensorBoard images.",
    )
    parser.add_argument("paths", nargs="+", help="sweep directories (with results.csv) and/or directories of runs")
    parser.add_argument("--out", help="output directory (default: the first path's report/ folder)")
    parser.add_argument(
        "--metric", default="final_test_err", choices=METRIC_COLUMNS, help="heatmap colour (default %(default)s)"
    )
    parser.add_argument("--top", type=int, default=10, help="cells circled and used for the correlation (default 10)")
    parser.add_argument("--lr_key", help="learning-rate column (default: the grid column ending in 'lr')")
    parser.add_argument("--decay_key", help="weight-decay column (default: the grid column ending in 'weight_decay')")
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    return report_errors(PROG, (ResultsError, _InputError), lambda: _report(args))


def _report(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise _InputError("--top must be at least 1")
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
        for heatmap, stats in write_sweep_report(sweeps, out, args.metric, args.top, args.lr_key, args.decay_key):
            print(f"{heatmap.title}: coupling slope {stats.slope:+.2f} ({stats.rows} lr rows), "
                  f"top-{stats.top_k} correlation {stats.correlation:+.2f}")
        print(f"wrote {out / HEATMAP_PNG} and {out / COUPLING_CSV}")
    if runs:
        for path in write_curves_report(runs, out):
            print(f"wrote {path}")
    print(f"TensorBoard images: tensorboard --logdir {out / TENSORBOARD_DIR}")
    return 0

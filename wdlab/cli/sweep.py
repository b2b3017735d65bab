"""``wdlab sweep``: a grid of ``wdlab fit`` cells, then its heatmaps (:mod:`wdlab.experiments.sweep`).

::

    wdlab sweep --config BASE.yaml \\
        --grid model.optimizer.lr=1,0.5,0.25 --grid model.optimizer.weight_decay=0,0.000125,0.00025 \\
        --out runs/my_sweep [--jobs N] [--seeds K] [--trainer.max_epochs 5 ...]

Exit status: 0 when every cell is done (or the sweep was stopped by SIGTERM), 1 when some cell
failed, 2 for bad input, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from wdlab.cli.errors import report_errors
from wdlab.experiments.cells import LAUNCHERS, cell_environment, make_launcher, visible_gpus
from wdlab.experiments.grid import parse_seeds
from wdlab.experiments.report import describe_pair, describe_panel, write_sweep_report
from wdlab.experiments.results import REPORT_DIR, ResultsError
from wdlab.experiments.sweep import SEED_KEY, Sweep, SweepError, SweepSpec, grid_preset, parse_grid

PROG = "wdlab sweep"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,  # a cell's option must never be taken for an abbreviation of the sweep's own
        description="Run a grid of 'wdlab fit' cells (an Optuna queue, resumable) and draw the heatmaps. "
        "Any other --key value is passed to every cell.",
    )
    parser.add_argument("--config", action="append", required=True, help="base config(s), as for wdlab fit")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="a grid axis (repeatable); replaces the config's sweep.grid preset for KEY")
    parser.add_argument("--out", required=True, help="sweep directory: cells' runs, sweep.db, results.csv, report/")
    parser.add_argument("--jobs", type=int, default=1, help="cells run at once (one GPU each when there are GPUs)")
    parser.add_argument("--seeds", default=None, metavar="K|A-B|A,B,...",
                        help="seeds per grid point (seed_everything): K means 0..K-1; A-B or A,B,C name them")
    parser.add_argument("--storage", help="Optuna RDB URL (default sqlite:///OUT/sweep.db; postgresql://... "
                        "for workers on many machines)")
    parser.add_argument("--study_name", help="study name in the storage (default: OUT's folder name)")
    parser.add_argument("--grace_period", type=int, default=120,
                        help="seconds without a heartbeat after which a running cell counts as dead and is re-run")
    parser.add_argument("--launcher", choices=sorted(LAUNCHERS),
                        default="preloaded" if hasattr(os, "fork") else "fresh",
                        help="how cells start: preloaded (forked from one process per slot that imported torch and "
                             "Lightning once; the default where the platform can fork) or fresh (a new python "
                             "process per cell); the same results either way")
    parser.add_argument("--no_report", action="store_true", help="do not draw the heatmaps at the end")
    parser.add_argument("--results_only", action="store_true",
                        help="write OUT/results.csv from the study as it stands (cells so far) and run nothing")
    parser.add_argument("--dry_run", action="store_true",
                        help="check the grid and build the first cell's model, data and trainer; print the cells "
                             "and run or write nothing")
    return parser


def split_passthrough(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The sweep's own options, parsed, and the ``--key value`` options meant for every cell, in order."""
    args, passthrough = build_parser().parse_known_args(argv)
    takes_value = False  # the token before was a cell option without "=": this one may be its value
    for token in passthrough:
        if not token.startswith("--") and not takes_value:
            raise SweepError(f"unexpected argument {token!r}: options are passed to the cells as --key value")
        takes_value = token.startswith("--") and "=" not in token
    return args, passthrough


@contextlib.contextmanager
def _ctrl_c_interrupts() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt inside, whatever this process inherited: a shell starts a background job
    with SIGINT ignored, and the sweep answers it while its cells run (:meth:`Sweep.run` installs its handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_sweep(argv: Sequence[str], progress: bool = True) -> int:
    """``wdlab sweep ...``: returns the exit status (0: all cells done; 1: some failed; 2: bad input)."""
    args, passthrough = split_passthrough(argv)
    configs = [Path(c) for c in args.config]
    for config in configs:
        if not config.is_file():
            raise SweepError(f"config {config} does not exist")
    for option in passthrough:
        if option.split("=", 1)[0] in ("--trainer.logger", "--ckpt_path", f"--{SEED_KEY}"):
            raise SweepError(f"{option} is set by the sweep for every cell; use --out / --seeds instead")
    if args.jobs < 1:
        raise SweepError("--jobs must be at least 1")
    grid, preset_seeds = grid_preset(configs)
    grid.update(parse_grid(args.grid))
    if not grid:
        raise SweepError("no grid: give --grid KEY=V1,V2,... or a config with a sweep.grid preset")
    if SEED_KEY in grid:
        raise SweepError(f"use --seeds K instead of a grid over {SEED_KEY}")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else (preset_seeds or [0])
    spec = SweepSpec(configs=configs, grid=grid, seeds=seeds, passthrough=passthrough,
                     out=Path(args.out))
    if args.results_only:  # e.g. while the sweep runs elsewhere: its cells so far, nothing started
        if not (spec.out.is_dir() or args.storage):
            raise SweepError(f"--results_only: {spec.out} holds no sweep yet; run the sweep first")
        path = Sweep(spec, args.storage, args.study_name, args.jobs, args.grace_period).write_results()
        print(f"wdlab sweep: results of the cells so far in {path}", file=sys.stderr)
        return 0
    options = spec.fit_args(spec.cells[0])
    options = options[: options.index("--ckpt_path")]  # a 'fit' argument, not an option of the objects
    if args.dry_run:  # nothing runs after the check: here, in this process (no data prepared: it writes nothing)
        from wdlab.cli.build import ConfigError, check_cell_builds

        try:
            check_cell_builds(options, prepare_data=False)
        except ConfigError as error:
            raise SweepError(str(error)) from None
        print(f"wdlab sweep: {len(spec.cells)} cells ({len(spec.cells) // len(spec.seeds)} grid points x "
              f"{len(spec.seeds)} seeds) into {spec.out}; the first cell's configuration builds. The first cell:\n"
              f"  wdlab fit {shlex.join(spec.fit_args(spec.cells[0]))}", file=sys.stderr)
        return 0
    # The first cell's objects are built and its data files found before the study records anything, in a child of
    # slot 0's cell server: this process never imports Lightning (nor torch: the check reports the optimizer
    # registry, and a machine without GPU device files has no GPU to count), and the first cell finds the server
    # started.
    try:
        launcher = make_launcher(args.launcher, cell_environment(visible_gpus(), 0, args.jobs))
    except ValueError as error:
        raise SweepError(str(error)) from None
    try:
        with _ctrl_c_interrupts():
            checked = launcher.check(options)
        if checked.reason is not None:
            raise SweepError(checked.reason)
        sweep = Sweep(spec, args.storage, args.study_name, args.jobs, args.grace_period, args.launcher,
                      first_launcher=launcher, optimizers=checked.optimizers)
        counts = sweep.run(progress=progress)
    finally:
        launcher.close()  # slot 0 has closed it already unless the sweep stopped before its cells
    results = sweep.write_results()
    print(f"wdlab sweep: {counts['complete']}/{len(spec.cells)} cells done, {counts['failed']} failed, "
          f"{counts['running']} running elsewhere; results in {results}", file=sys.stderr)
    if not args.no_report and counts["complete"]:
        try:
            report = write_sweep_report([spec.out], spec.out / REPORT_DIR)
            for heatmap, stats in report.panels:
                print("\n".join(describe_panel(heatmap, stats)), file=sys.stderr)
            for pair in report.pairs:
                print(describe_pair(pair), file=sys.stderr)
            print(f"heatmap: {spec.out / REPORT_DIR / 'heatmap.png'}", file=sys.stderr)
        except ResultsError as error:  # e.g. a grid without an lr and a decay axis: the CSV still stands
            print(f"wdlab sweep: no heatmap: {error}", file=sys.stderr)
    if sweep.stop_event.is_set():
        print("wdlab sweep: stopped; re-run the same command to resume (finished cells are kept)", file=sys.stderr)
        return 0 if sweep.stop_signal == signal.SIGTERM else 130
    return 1 if counts["failed"] else 0


def main(argv: Sequence[str]) -> int:
    progress = sys.stderr.isatty() or bool(os.environ.get("WDLAB_PROGRESS"))
    try:
        return report_errors(PROG, (SweepError,), lambda: run_sweep(argv, progress=progress))
    except KeyboardInterrupt:  # before the cells started (while checking the config): nothing to resume
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130

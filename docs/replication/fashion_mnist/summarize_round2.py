"""Round 2 (Fashion-MNIST): Figs. 1/3, Fig. 4 and Appendix B.1, decided by the pre-registered rules.

    python docs/replication/fashion_mnist/summarize_round2.py [--docs DIR] [--runs DIR]

Applies docs/replication/PREREGISTRATION.md (section 1's table, sections 4 and 5) to the parts that
``run_round2.py`` writes under ``--docs`` (default: this folder): ``<docs>/<part>/results.csv``. Where the run
directories are still there (``--runs``, default ``runs/replication/fashion_mnist``), what results.csv does not hold
is read from them and written next to results.csv, so that a checkout without ``runs/`` gives the same numbers:
``<docs>/fig13_<opt>/curves.csv`` (per-epoch training loss, validation and test error) and
``<docs>/fig4_<restarts>_<arm>/anytime.csv`` (each snapshot's validation error as logged, and its test error from
its checkpoint, evaluated by ``wdlab ensemble --split test``). Prints one line per measure and writes
``<docs>/round2_summary.csv`` (claim, measure, value, t_lo, t_hi, boot_lo, boot_hi, seeds, verdict, reason).
Differences are in percentage points of test error; seeds are paired by their seed value.

Rules (fixed before the runs; the first matching one decides):

* **Fig. 1**: Adam - AdamW final test error, per seed; mean with its 95 % t interval (n - 1 df) and the
  whole-seed bootstrap of the mean beside it. Reproduced: the t interval's lower end > 0. Not reproduced: its
  upper end < +0.5 points. Otherwise undecided.
* **Fig. 3**: the same difference at the lowest training loss every run reaches (each run's test error where
  the running minimum of its per-epoch training loss reaches that level, ``summarize.error_at_loss``); same rule.
* **Fig. 4**: per seed, the snapshot's test error at a period end minus that of the cosine run of exactly that
  length, at every period end after the first (3 T_0, 7 T_0), for AdamWR and SGDWR in both arms (``norm``,
  ``raw``). Reproduced ("no cost" within a 1-point margin): the t interval's upper end < +1 point. Not
  reproduced ("costs"): its lower end > 0 and its upper end > +1. Otherwise undecided.
* **App. B.1**: per run length T (``trainer.max_epochs``), the row optimum log2 lambda* (the parabola vertex of
  the mean test error in log2 lambda, as ``wdlab report``); the slope d log2 lambda* / d log2 T by least squares,
  its whole-seed bootstrap interval (2,000 resamples, RNG seed 0; the primary interval) with the per-seed t and
  per-cell bootstrap intervals beside it (a verdict that differs between them is noted as fragile). The
  normalized slope is raw + 0.5. Reproduced: the raw interval contains -0.5 and excludes 0, and the normalized
  interval lies inside (-0.25, +0.25). Not reproduced: the raw interval excludes -0.5. Otherwise undecided. A run
  length enters the slope only if well trained (section 3, criterion (a)): the mean final training loss
  <= 0.15 at its best lambda by mean validation error; one that is not is reported and left out.
* Fewer than two seeds (or, for B.1, fewer than two well-trained run lengths): undecided, with the reason.
  A part (or the curves / snapshot errors a measure needs) that is not there is reported as missing.

**Cost** (section 6's budget: the round <= 12 hours two cells at a time, Fig. 2 <= 6 hours), written to
``<docs>/round2_cost.csv``: for every part of ``run_round2.py`` found under ``--docs``, its completed cells grouped by
run length (results.csv's ``epochs``), each group's median ``wall_s`` times its number of cells, summed and divided by
the two slots. The median, because a cell's ``wall_s`` also counts any time its process was stopped or shared the
cores with other work, and a cell resumed from its checkpoint counts only its last stretch.

Exit status 0 when the summary ran (whatever the verdicts); 2 with a one-line error on bad input.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import math
import statistics
import subprocess
import sys
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # round 1's scripts live one folder up, outside any package
sys.path.insert(0, str(HERE))  # figures_round2.py, beside this script
import round1_figures  # noqa: E402
import summarize  # noqa: E402

from wdlab.experiments.intervals import (  # noqa: E402
    Interval,
    per_cell_bootstrap_slopes,
    per_seed_slopes,
    percentile_interval,
    t_interval,
    whole_seed_bootstrap_slopes,
)
from wdlab.experiments.results import ResultsError, complete_rows, epoch_of_step, read_results, read_scalars  # noqa: E402
from wdlab.experiments.row_optima import least_squares_slope, row_optima  # noqa: E402

WD, EPOCHS = summarize.WD, summarize.EPOCHS
FIG1_MARGIN = 0.5  # points: AdamW at most half a point better (or worse) is "not reproduced"
FIG4_MARGIN = 1.0  # points: a restart snapshot within one point of the cosine run costs "nothing"
B1_RAW = -0.5  # the paper's prediction: lambda* ~ T^-1/2
B1_NORM_BAND = 0.25  # the normalized slope's interval must lie inside (-0.25, +0.25)
NORM_SLOPE_OFFSET = summarize.NORM_SLOPE_OFFSET  # log2 lambda_norm = log2 lambda + 0.5 log2 T (+ constant)
WELL_TRAINED_LOSS = 0.15  # section 3, criterion (a)
RESTARTS = (("adamwr", "AdamWR"), ("sgdwr", "SGDWR"))
ARMS = ("norm", "raw")
FEWER_THAN_TWO = "fewer than two seeds"
FIELDS = ("claim", "measure", "value", "t_lo", "t_hi", "boot_lo", "boot_hi", "seeds", "verdict", "reason")
SLOTS = 2  # section 6: two cells at a time on the 2-core machine
ROUND_PARTS = ("fig2_", "fig13_", "fig4_", "b1_")  # run_round2.py's parts; the pilot's are not the round's
BUDGET_HOURS = {"fig2": 6.0, "round 2": 12.0}
COST_FIELDS = ("part", "cells", "planned", "run_lengths", "median_cell_s", "hours", "budget_hours", "complete")
NAN = math.nan


@dataclass
class Line:
    """One measure of the summary (a row of round2_summary.csv); intervals NaN where undefined."""

    claim: str
    measure: str
    value: float = NAN
    t_lo: float = NAN
    t_hi: float = NAN
    boot_lo: float = NAN
    boot_hi: float = NAN
    seeds: int = 0
    verdict: str = "undecided"
    reason: str = ""

    def text(self) -> str:
        """The printed line: value, t interval, bootstrap interval, seeds, verdict and reason."""
        return (f"{self.claim} | {self.measure}: {_num(self.value)} t [{_num(self.t_lo)}, {_num(self.t_hi)}] "
                f"boot [{_num(self.boot_lo)}, {_num(self.boot_hi)}] ({self.seeds} seeds) -> {self.verdict}"
                + (f": {self.reason}" if self.reason else ""))


def _num(x: float) -> str:
    return f"{x:+.3f}" if math.isfinite(x) else "nan"


# -- decision rules (section 1), on intervals in points (Figs.) or in slope units (B.1) ----------------
def fig1_verdict(t_lo: float, t_hi: float) -> tuple[str, str]:
    """Figs. 1/3: reproduced if t_lo > 0; not reproduced if t_hi < +0.5; otherwise undecided."""
    if t_lo > 0:
        return "reproduced", f"t interval's lower end {t_lo:+.3f} > 0: AdamW generalizes better"
    if t_hi < FIG1_MARGIN:
        return "not reproduced", f"t interval's upper end {t_hi:+.3f} < +{FIG1_MARGIN:g} points"
    return "undecided", f"t interval [{t_lo:+.3f}, {t_hi:+.3f}] neither above 0 nor below +{FIG1_MARGIN:g}"


def fig4_verdict(t_lo: float, t_hi: float) -> tuple[str, str]:
    """Fig. 4: reproduced (no cost) if t_hi < +1; not reproduced (costs) if t_lo > 0 and t_hi > +1; else undecided."""
    if t_hi < FIG4_MARGIN:
        return "reproduced", f"no cost: t interval's upper end {t_hi:+.3f} < +{FIG4_MARGIN:g} point"
    if t_lo > 0 and t_hi > FIG4_MARGIN:
        return "not reproduced", f"restarts cost: t interval [{t_lo:+.3f}, {t_hi:+.3f}] above 0 and reaching past +1"
    # absence of evidence is not "no cost"
    return "undecided", f"t interval [{t_lo:+.3f}, {t_hi:+.3f}] neither below +1 nor above 0"


def b1_verdict(lo: float, hi: float) -> tuple[str, str]:
    """B.1 on the raw slope's interval [lo, hi] (the normalized one is [lo + 0.5, hi + 0.5])."""
    contains, excludes_zero = lo <= B1_RAW <= hi, hi < 0 or lo > 0
    norm_lo, norm_hi = lo + NORM_SLOPE_OFFSET, hi + NORM_SLOPE_OFFSET
    if contains and excludes_zero and -B1_NORM_BAND < norm_lo and norm_hi < B1_NORM_BAND:
        return "reproduced", (f"raw [{lo:+.3f}, {hi:+.3f}] contains -0.5 and excludes 0; normalized "
                              f"[{norm_lo:+.3f}, {norm_hi:+.3f}] inside (-0.25, +0.25)")
    if not contains:
        return "not reproduced", f"raw [{lo:+.3f}, {hi:+.3f}] excludes -0.5"
    return "undecided", (f"raw [{lo:+.3f}, {hi:+.3f}] contains -0.5 but " +
                         ("contains 0" if not excludes_zero else
                          f"normalized [{norm_lo:+.3f}, {norm_hi:+.3f}] not inside (-0.25, +0.25)"))


# -- paired differences (section 5: the seed is the unit) -----------------------------------------
def pair(a: dict[int, float], b: dict[int, float]) -> tuple[dict[int, float], str]:
    """Per-seed a - b in points over the seeds both sides have, and a note naming the seeds only one side has."""
    diffs = {s: 100.0 * (a[s] - b[s]) for s in sorted(set(a) & set(b)) if math.isfinite(a[s] - b[s])}
    alone = [f"seed {s} only on one side" for s in sorted(set(a) ^ set(b))]
    unusable = [f"seed {s} has no value" for s in sorted(set(a) & set(b)) if s not in diffs]
    return diffs, "; ".join(alone + unusable)


def paired_line(claim: str, measure: str, diffs: dict[int, float], note: str,
                rule: Callable[[float, float], tuple[str, str]]) -> Line:
    """The mean of per-seed differences, its t and whole-seed bootstrap intervals, and ``rule``'s verdict."""
    line = Line(claim, measure, seeds=len(diffs))
    if diffs:
        stats = round1_figures.paired(np.array(list(diffs.values()), dtype=np.float64))
        line.value, line.t_lo, line.t_hi, line.boot_lo, line.boot_hi = (
            stats[k] for k in ("value", "t_lo", "t_hi", "boot_lo", "boot_hi"))
    if len(diffs) < 2:
        line.reason = FEWER_THAN_TWO
    else:
        line.verdict, line.reason = rule(line.t_lo, line.t_hi)
    if note:
        line.reason += f" ({note})"
    return line


def shown(path: Path) -> Path:
    """``path`` relative to the working directory where it lies below it: the CSVs are shipped, a home path is noise."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def missing_line(claim: str, measure: str, why: str) -> Line:
    return Line(claim, measure, verdict="missing", reason=why)


# -- reading the parts -------------------------------------------------------------------------------
def load(docs: Path, part: str) -> list[dict[str, str]] | None:
    """The complete rows of ``<docs>/<part>/results.csv`` (None if the part has not been written)."""
    if not (docs / part / "results.csv").is_file():
        return None
    rows = read_results(docs / part)
    done = complete_rows(rows)
    if len(done) < len(rows):
        print(f"{part}: {len(rows) - len(done)} of {len(rows)} cells not complete; using the {len(done)} that are")
    return done


def by_seed(rows: list[dict[str, str]], column: str = "final_test_err") -> dict[int, float]:
    return {int(r["seed"]): _float(r.get(column)) for r in rows}


def _float(text: str | None) -> float:
    return NAN if text in ("", None) else float(text)


def _have_runs(runs: Path, part: str, rows: list[dict[str, str]]) -> bool:
    return bool(rows) and all(summarize._run_dir(runs, part, r).is_dir() for r in rows)


Point = tuple[int, float, float, float]  # (epoch, training loss, validation error, test error); NaN: not evaluated


def run_curve(run_dir: Path) -> list[Point]:
    """A run's training loss per epoch with the validation and test errors evaluated on that epoch's weights."""
    scalars = read_scalars(run_dir)
    epochs = epoch_of_step(scalars)
    train = sorted(scalars.get("train/loss", []))
    steps = [s for s, _ in train]

    def epoch_at(step: int) -> int | None:
        # the test after fit is logged one step after the last epoch's loss: the weights of the last epoch
        k = bisect.bisect_right(steps, step) - 1
        return epochs.get(steps[k]) if k >= 0 else None

    val = {epoch_at(s): v for s, v in scalars.get("val/err", [])}
    test = {epoch_at(s): v for s, v in scalars.get("test/err", [])}
    return [(epochs[s], loss, val.get(epochs[s], NAN), test.get(epochs[s], NAN)) for s, loss in train if s in epochs]


def curves(docs: Path, runs: Path, part: str, rows: list[dict[str, str]]) -> dict[int, list[Point]] | None:
    """Per seed, its per-epoch points: from the run directories (rewriting curves.csv) or curves.csv (None: neither)."""
    path = docs / part / "curves.csv"
    if _have_runs(runs, part, rows):
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["seed", "epoch", "train_loss", "val_err", "test_err"])
            for r in rows:
                for epoch, loss, val, test in run_curve(summarize._run_dir(runs, part, r)):
                    writer.writerow([r["seed"], epoch, loss, *("" if math.isnan(x) else x for x in (val, test))])
    if not path.is_file():
        return None
    points: dict[int, list[Point]] = defaultdict(list)
    with path.open(newline="") as handle:
        for c in csv.DictReader(handle):
            points[int(c["seed"])].append((int(c["epoch"]), float(c["train_loss"]), _float(c["val_err"]),
                                           _float(c["test_err"])))
    return {seed: sorted(p) for seed, p in points.items()}


def snapshot_test_errors(run_dir: Path) -> dict[int, float]:
    """Test error (fraction) of each snapshot checkpoint in ``run_dir/snapshots``, by the epoch its period ends.

    The logged ``anytime/err`` is the validation split's error (round 2 holds one out), not the test error the
    claims use: the checkpoints are evaluated on the test set by ``wdlab ensemble`` with the run's own config, on
    the batches the run's own test used (its ``trainer.limit_test_batches``, if it set one: the cosine runs it is
    compared with were tested on those).
    """
    folder = run_dir / "snapshots"
    if not any(folder.glob("*.ckpt")):
        return {}
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    limit = (config.get("trainer") or {}).get("limit_test_batches")
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "snapshots.csv"
        done = subprocess.run([sys.executable, "-m", "wdlab", "ensemble", "--snapshots", str(folder), "--split",
                               "test", "--device", "cpu", "--csv", str(table),
                               *(["--limit_batches", repr(limit)] if limit is not None else [])],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0 or not table.is_file():
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            print(f"warning: {folder}: snapshots not evaluated on the test set: {why}", file=sys.stderr)
            return {}
        with table.open(newline="") as handle:
            return {int(r["last_epoch"]): int(r["top1_wrong"]) / int(r["num_examples"])
                    for r in csv.DictReader(handle) if r["kind"] == "snapshot"}


def anytime(docs: Path, runs: Path, part: str, rows: list[dict[str, str]]) -> dict[int, dict[int, float]] | None:
    """Per seed, the snapshot test error per period end: from the run directories (rewriting anytime.csv, reusing
    the test errors it already holds for the same run: evaluating checkpoints is the slow part) or from
    anytime.csv (None: neither exists)."""
    path = docs / part / "anytime.csv"
    known: dict[tuple[str, int], str] = {}
    if path.is_file():
        with path.open(newline="") as handle:
            known = {(a["run"], int(a["epoch"])): a["test_err"] for a in csv.DictReader(handle) if a["test_err"]}
    if _have_runs(runs, part, rows):
        table = []
        for r in rows:
            run_dir = summarize._run_dir(runs, part, r)
            val = dict(read_scalars(run_dir).get("anytime/err", []))
            cached = {e: float(known[(run_dir.name, e)]) for e in val if (run_dir.name, e) in known}
            test = cached if val and len(cached) == len(val) else snapshot_test_errors(run_dir)
            for epoch in sorted(set(val) | set(test)):
                table.append([run_dir.name, r["seed"], epoch, val.get(epoch, ""), test.get(epoch, "")])
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["run", "seed", "epoch", "val_err", "test_err"])
            writer.writerows(table)
    if not path.is_file():
        return None
    errors: dict[int, dict[int, float]] = defaultdict(dict)
    with path.open(newline="") as handle:
        for a in csv.DictReader(handle):
            errors[int(a["seed"])][int(a["epoch"])] = _float(a["test_err"])
    return dict(errors)


# -- the claims ---------------------------------------------------------------------------------------
def figs_1_3(docs: Path, runs: Path) -> list[Line]:
    """Fig. 1 (final test error) and Fig. 3 (test error at a training loss every run reaches), Adam - AdamW."""
    fig1 = "test error Adam - AdamW (points)"
    fig3 = "test error at the lowest training loss every run reaches, Adam - AdamW (points)"
    sides = {name: load(docs, f"fig13_{name}") for name in ("adam", "adamw")}
    absent = [f"fig13_{name}" for name, rows in sides.items() if rows is None]
    if absent:
        why = f"{', '.join(absent)}: no results.csv under {shown(docs)}"
        return [missing_line("fig1", fig1, why), missing_line("fig3", fig3, why)]
    adam, adamw = sides["adam"] or [], sides["adamw"] or []
    diffs, note = pair(by_seed(adam), by_seed(adamw))
    lines = [paired_line("fig1", fig1, diffs, note, fig1_verdict)]

    seeds = sorted(diffs)
    points = {name: curves(docs, runs, f"fig13_{name}", rows) for name, rows in (("adam", adam), ("adamw", adamw))}
    lost = [f"fig13_{n}" for n, p in points.items() if p is None or any(s not in p for s in seeds)]
    if len(seeds) >= 2 and lost:
        return [*lines, missing_line("fig3", fig3, f"{', '.join(lost)}: no per-epoch curves (neither run directories "
                                                   f"under {runs} nor curves.csv)")]
    tested = {n: {s: [(loss, err) for _, loss, _, err in p.get(s, []) if math.isfinite(err)] for s in seeds}
              for n, p in points.items() if p is not None}
    fewest = min((len(v) for side in tested.values() for v in side.values()), default=0)
    if len(seeds) >= 2 and fewest < 2:
        return [*lines, missing_line("fig3", fig3, f"a run has test errors at {fewest} epoch(s): Fig. 3 needs "
                                                   "the test error every epoch")]
    level = max((min(loss for loss, _ in v) for side in tested.values() for v in side.values() if v), default=NAN)
    at = {n: {s: summarize.error_at_loss([x[0] for x in v], [x[1] for x in v], level) for s, v in side.items() if v}
          for n, side in tested.items()}
    diffs3, note3 = pair(at.get("adam", {}), at.get("adamw", {}))
    lines.append(paired_line("fig3", f"test error at training loss {level:.4f}, Adam - AdamW (points)", diffs3,
                             note3, fig1_verdict))
    return lines


def fig4(docs: Path, runs: Path) -> list[Line]:
    """Fig. 4: snapshot - cosine run of that length at every period end after the first, per optimizer and arm."""
    lines = []
    for restarts, label in RESTARTS:
        for arm in ARMS:
            part, cosine_part = f"fig4_{restarts}_{arm}", f"fig4_{restarts}_{arm}_cosine"
            measure = f"{label} {arm}: snapshot - cosine run (points)"
            wr, cosine = load(docs, part), load(docs, cosine_part)
            absent = [p for p, rows in ((part, wr), (cosine_part, cosine)) if rows is None]
            if absent:
                lines.append(missing_line("fig4", measure, f"{', '.join(absent)}: no results.csv under {shown(docs)}"))
                continue
            snapshots = anytime(docs, runs, part, wr or [])
            if snapshots is None:
                lines.append(missing_line("fig4", measure, f"{part}: no snapshot errors (neither run directories "
                                                           f"under {runs} nor anytime.csv)"))
                continue
            lengths: dict[int, dict[int, float]] = defaultdict(dict)
            for r in cosine or []:
                lengths[int(float(r[EPOCHS]))][int(r["seed"])] = float(r["final_test_err"])
            ends = sorted({e for errs in snapshots.values() for e in errs})
            # the first period is the cosine run of its length itself (the same computation): never compared
            compared = [end for end in sorted(lengths) if not ends or end > ends[0]]
            if not compared:
                lines.append(Line("fig4", measure, reason=f"{cosine_part}: no cosine run longer than the first "
                                                          "period"))
            for end in compared:
                at = f"{label} {arm}: snapshot - cosine run at epoch {end} (points)"
                snap = {s: errs[end] for s, errs in snapshots.items() if end in errs}
                if not any(math.isfinite(x) for x in snap.values()):
                    lines.append(missing_line("fig4", at, f"{part}: no snapshot test error at epoch {end} (its "
                                                          "checkpoints were not evaluated)"))
                    continue
                diffs, note = pair(snap, lengths[end])
                lines.append(paired_line("fig4", at, diffs, note, fig4_verdict))
    return lines


@dataclass
class RunLength:
    """One run length of B.1: whether it is well trained (criterion (a)) and its row optimum."""

    epochs: float
    best_decay: float
    train_loss: float
    well_trained: bool
    log2_decay: float
    edge: bool


def b1_tables(rows: list[dict[str, str]]) -> tuple[list[float], list[float], list[int], dict[str, np.ndarray]]:
    """Run lengths, decays, seeds and ``{column: values[length, decay, seed]}`` (NaN where a cell is absent)."""
    lengths = sorted({float(r[EPOCHS]) for r in rows})
    decays = sorted({float(r[WD]) for r in rows})
    seeds = sorted({int(r["seed"]) for r in rows})
    tables = {c: np.full((len(lengths), len(decays), len(seeds)), NAN)
              for c in ("final_test_err", "final_val_err", "final_train_loss")}
    for r in rows:
        at = lengths.index(float(r[EPOCHS])), decays.index(float(r[WD])), seeds.index(int(r["seed"]))
        for column, table in tables.items():
            table[at] = _float(r.get(column))
    return lengths, decays, seeds, tables


def run_lengths(lengths: list[float], decays: list[float], tables: dict[str, np.ndarray]) -> list[RunLength]:
    """Per run length: its best decay by mean validation error, the mean training loss there, its row optimum."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a cell without any seed: its mean is NaN, as meant
        val, loss, test = (np.nanmean(tables[c], axis=-1) for c in ("final_val_err", "final_train_loss",
                                                                      "final_test_err"))
    optima = row_optima(lengths, decays, test)
    out = []
    for i, optimum in enumerate(optima):
        j = int(np.nanargmin(val[i])) if np.isfinite(val[i]).any() else -1
        train = float(loss[i, j]) if j >= 0 else NAN
        out.append(RunLength(lengths[i], decays[j] if j >= 0 else NAN, train, train <= WELL_TRAINED_LOSS,
                             optimum.log2_decay, optimum.edge))
    return out


def b1_slope(lengths: list[float], decays: list[float], test: np.ndarray) -> tuple[float, Interval, Interval,
                                                                                     Interval]:
    """The raw slope of the mean table, its whole-seed bootstrap, per-seed t and per-cell bootstrap intervals."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        optima = row_optima(lengths, decays, np.nanmean(test, axis=-1))
    point = least_squares_slope(np.log2(lengths), np.array([o.log2_decay for o in optima]))
    n = test.shape[-1]
    whole = percentile_interval("whole_seed", whole_seed_bootstrap_slopes(lengths, decays, test), n)
    per_seed = t_interval("per_seed_t", per_seed_slopes(lengths, decays, test))
    per_cell = percentile_interval("per_cell", per_cell_bootstrap_slopes(lengths, decays, test), n)
    return point, whole, per_seed, per_cell


def b1(docs: Path) -> list[Line]:
    """Appendix B.1: per run length its optimum and training check; the raw and normalized slopes over T."""
    raw_measure, norm_measure = "d log2 lambda* / d log2 T (raw)", "d log2 lambda_norm* / d log2 T (raw + 0.5)"
    rows = load(docs, "b1_adamw")
    if rows is None:
        why = f"b1_adamw: no results.csv under {shown(docs)}"
        return [missing_line("b1", raw_measure, why), missing_line("b1", norm_measure, why)]
    lengths, decays, seeds, tables = b1_tables(rows)
    checked = run_lengths(lengths, decays, tables)
    lines = []
    for length in checked:
        verdict = "well trained" if length.well_trained else "not well trained: left out of the slope"
        lines.append(Line("b1", f"T = {length.epochs:g}: log2 lambda* (test error, parabola vertex)",
                          value=length.log2_decay, seeds=len(seeds), verdict=verdict,
                          reason=f"mean final training loss {length.train_loss:.4f} at the best lambda by validation "
                                 f"error ({length.best_decay:.4g}); criterion (a): <= {WELL_TRAINED_LOSS:g}"
                                 + ("; the optimum is at the grid edge" if length.edge else "")))
    used = [i for i, length in enumerate(checked) if length.well_trained]
    label = "T = " + ", ".join(f"{lengths[i]:g}" for i in used) if used else "no run length"
    raw, norm = Line("b1", f"{raw_measure}, {label}", seeds=len(seeds)), Line("b1", f"{norm_measure}, {label}",
                                                                               seeds=len(seeds))
    if len(used) >= 2:
        point, whole, per_seed, per_cell = b1_slope([lengths[i] for i in used], decays, tables["final_test_err"][used])
        raw.value, raw.t_lo, raw.t_hi, raw.boot_lo, raw.boot_hi = point, per_seed.lo, per_seed.hi, whole.lo, whole.hi
        for name in ("value", "t_lo", "t_hi", "boot_lo", "boot_hi"):
            setattr(norm, name, getattr(raw, name) + NORM_SLOPE_OFFSET)
    if len(seeds) < 2:
        raw.reason = FEWER_THAN_TWO
    elif len(used) < 2:
        raw.reason = f"fewer than two well-trained run lengths ({label})"
    elif not whole.defined:
        raw.reason = f"whole-seed bootstrap undefined: {whole.note}"
    else:
        raw.verdict, raw.reason = b1_verdict(whole.lo, whole.hi)
        others = [f"{i.name} gives {b1_verdict(i.lo, i.hi)[0]}" for i in (per_seed, per_cell)
                  if i.defined and b1_verdict(i.lo, i.hi)[0] != raw.verdict]
        if others:
            raw.reason += f"; fragile: {', '.join(others)}"
        raw.reason += f"; per-cell bootstrap [{_num(per_cell.lo)}, {_num(per_cell.hi)}]"
    norm.verdict, norm.reason = raw.verdict, raw.reason  # one rule decides on both slopes
    return [*lines, raw, norm]


@dataclass
class PartCost:
    """What one part of the round cost, two cells at a time (module docstring, *Cost*)."""

    part: str
    cells: int  # completed
    planned: int  # the part's cells in results.csv, pending and failed ones too
    run_lengths: str  # the groups' epochs, e.g. "200" or "100, 200, 400"
    median_cell_s: float  # the typical cell: hours * SLOTS * 3600 / cells
    hours: float
    budget_hours: float = NAN  # only on the totals that section 6 bounds
    complete: bool = True  # every planned cell (and, for a total, every part it bounds) is done

    def text(self) -> str:
        budget = ""
        if not math.isnan(self.budget_hours):
            verdict = "within" if self.hours <= self.budget_hours else "over"
            budget = f" (budget {self.budget_hours:g} h: {verdict}{'' if self.complete else ' so far'})"
        return (f"cost | {self.part}: {self.cells} of {self.planned} cells, {self.median_cell_s:.1f} s a cell, "
                f"{self.hours:.2f} h two at a time{budget}")


def part_cost(part: str, rows: list[dict[str, str]]) -> PartCost:
    """hours = sum over run lengths L of median(wall_s of L's cells) * (number of L's cells) / SLOTS / 3600."""
    groups: dict[float, list[float]] = defaultdict(list)
    for row in rows:
        if row["state"] == "complete" and row.get("wall_s"):
            groups[float(row["epochs"])].append(float(row["wall_s"]))
    cells = sum(len(walls) for walls in groups.values())
    seconds = sum(statistics.median(walls) * len(walls) for walls in groups.values())
    return PartCost(part, cells, len(rows), ", ".join(f"{e:g}" for e in sorted(groups)),
                    seconds / cells if cells else NAN, seconds / SLOTS / 3600, complete=cells == len(rows))


def round_cost(docs: Path) -> list[PartCost]:
    """Every part of the round under ``docs``, then the Fig. 2 total and the round's, with section 6's budgets.

    A total is complete when each of its parts is, and (the round's) when every kind of part has been written."""
    parts = sorted(d.name for d in docs.iterdir() if d.name.startswith(ROUND_PARTS) and (d / "results.csv").is_file())
    costs = [part_cost(part, read_results(docs / part)) for part in parts]
    totals = []
    for name, prefixes in (("fig2", ("fig2_",)), ("round 2", ROUND_PARTS)):
        members = [c for c in costs if c.part.startswith(prefixes)]
        cells = sum(c.cells for c in members)
        hours = sum(c.hours for c in members)
        complete = all(c.complete for c in members) and all(any(c.part.startswith(p) for c in members)
                                                            for p in prefixes)
        totals.append(PartCost(f"{name} (total)", cells, sum(c.planned for c in members), "",
                               hours * SLOTS * 3600 / cells if cells else NAN, hours, BUDGET_HOURS[name], complete))
    return [*costs, *totals]


def write_records(path: Path, fields: Sequence[str], records: Sequence[Line | PartCost]) -> None:
    """One CSV row per record; floats to 6 significant digits, NaN as an empty field."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for record in records:
            writer.writerow({k: (f"{v:.6g}" if math.isfinite(v) else "") if isinstance(v, float) else v
                             for k, v in asdict(record).items()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, default=HERE, help="where each part's results.csv is (default: here)")
    parser.add_argument("--runs", type=Path, default=Path("runs/replication/fashion_mnist"),
                        help="the run directories, if still there (default: runs/replication/fashion_mnist)")
    args = parser.parse_args(argv)
    if not args.docs.is_dir():
        print(f"summarize_round2: error: --docs {args.docs} is not a directory", file=sys.stderr)
        return 2
    try:
        lines = [*figs_1_3(args.docs, args.runs), *fig4(args.docs, args.runs), *b1(args.docs)]
    except (ResultsError, KeyError, ValueError) as error:  # a results.csv or curve file not in the expected format
        print(f"summarize_round2: error: a CSV under {args.docs} is not in the format run_round2.py and this "
              f"script write ({type(error).__name__}: {error})", file=sys.stderr)
        return 2
    for line in lines:
        print(line.text())
    write_records(args.docs / "round2_summary.csv", FIELDS, lines)
    costs = round_cost(args.docs)
    for cost in costs:
        print(cost.text())
    write_records(args.docs / "round2_cost.csv", COST_FIELDS, costs)
    print(f"wrote {args.docs / 'round2_summary.csv'} and {args.docs / 'round2_cost.csv'}")
    # run as a script, this module is __main__: figures_round2's "import summarize_round2" gets it, not a second copy
    sys.modules.setdefault("summarize_round2", sys.modules[__name__])
    import figures_round2  # here, not above: it imports this script's readers

    figures_round2.write_figures(args.docs, args.docs / "figures", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

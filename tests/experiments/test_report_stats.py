"""``wdlab report``'s statistics on synthetic sweeps whose answer is known.

Every table is written as a real ``results.csv`` (``write_results``) and read back by the real
``wdlab report`` command (``wdlab.cli.main``): per-row optimum log2 lambda* (parabola), the slope and
its intervals over seeds, the verdict, the basin, the headroom and ``coupling.csv``. The rules that
decide which rows enter and the verdicts' margins are tested in ``test_report_rules.py``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from sweep_tables import LOG2_DECAYS, LOG2_LRS, ORIGINAL_COLUMNS, diagonal, report, vertical, write_sweep
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from wdlab.cli import main
from wdlab.experiments.coupling import classify
from wdlab.experiments.heatmaps import basin_mask, basin_outline, decay_type_of, heatmaps_from_table
from wdlab.experiments.intervals import BOOTSTRAP_RESAMPLES, whole_seed_bootstrap_slopes
from wdlab.experiments.plots import plot_heatmaps
from wdlab.experiments.results import read_results


# -- slope, interval and verdict on known answers -------------------------------------------------
def test_noiseless_diagonal_basin_gives_slope_minus_one_with_a_tight_interval(tmp_path: Path, capsys) -> None:
    write_sweep(tmp_path / "sgd", "sgd", diagonal, spread=0.0005)
    (row,), _, printed = report([tmp_path / "sgd"], tmp_path / "out", capsys)
    assert float(row["slope"]) == pytest.approx(-1.0, abs=1e-3)
    lo, hi = float(row["slope_lo"]), float(row["slope_hi"])
    assert lo <= -1.0 <= hi and hi - lo < 0.1
    assert int(row["seeds"]) == 3 and int(row["resamples"]) >= 1000
    assert row["decay_type"] == "L2" and row["verdict"] == "coupled" and row["outcome"] == "as the paper"
    assert "verdict (L2, margin 0.5): coupled; as the paper" in printed


def test_axis_aligned_basin_gives_slope_zero_with_a_tight_interval(tmp_path: Path, capsys) -> None:
    write_sweep(tmp_path / "sgdw", "sgdw", vertical, spread=0.0005)
    (row,), _, printed = report([tmp_path / "sgdw"], tmp_path / "out", capsys)
    assert float(row["slope"]) == pytest.approx(0.0, abs=1e-3)
    lo, hi = float(row["slope_lo"]), float(row["slope_hi"])
    assert lo <= 0.0 <= hi and hi - lo < 0.1
    assert row["decay_type"] == "decoupled" and row["verdict"] == "decoupled"
    assert "verdict (decoupled, margin 0.5): decoupled; as the paper" in printed


def test_noisy_argmin_slope_of_minus_one_has_an_interval_that_honestly_covers_zero(tmp_path: Path, capsys) -> None:
    """Two seeds 10 points apart around cell means whose argmin lies exactly on the diagonal.

    The means alone say slope -1; the seeds say the diagonal is 0.2 points deep against a 5-point
    seed noise, so the interval must reach 0 and an L2 panel must not be called coupled (two seeds
    are also fewer than the three a verdict needs).
    """

    def shallow(a: float, d: float | None) -> float:
        return 0.30 + 0.002 * (a + d + 14) ** 2

    signs = np.random.default_rng(3).choice([-1.0, 1.0], size=(len(LOG2_LRS), len(LOG2_DECAYS)))
    write_sweep(tmp_path / "noisy", "sgd", shallow, seeds=2,
                spread=lambda i, j, seed: 0.05 * signs[i, j] * (1 if seed else -1))  # fmt: skip
    write_sweep(tmp_path / "clean", "sgd", shallow, seeds=2, spread=0.0)
    noisy, clean = (report([tmp_path / n], tmp_path / f"out_{n}", capsys)[0][0] for n in ("noisy", "clean"))
    assert float(noisy["argmin_slope"]) == pytest.approx(-1.0)
    assert float(noisy["slope"]) == pytest.approx(-1.0, abs=1e-3)
    # two seeds give the whole-seed bootstrap three distinct tables: its interval spans their slopes
    for kind in ("per_seed_t", "per_cell"):
        assert float(noisy[f"{kind}_lo"]) < -1.0 < 0.0 < float(noisy[f"{kind}_hi"]), kind
    assert float(noisy["slope_hi"]) - float(noisy["slope_lo"]) > 0.2
    assert noisy["verdict"] == "undecided: 2 seeds, fewer than 3"
    # the same means without seed noise: the same slope, now with tight intervals (still 2 seeds)
    assert float(clean["slope_hi"]) < -0.5 and float(clean["per_cell_hi"]) < -0.5
    assert clean["verdict"] == "undecided: 2 seeds, fewer than 3"


def test_bootstrap_is_reproducible_and_resamples_seeds(tmp_path: Path, capsys) -> None:
    signs = np.random.default_rng(7).choice([-1.0, 1.0], size=(len(LOG2_LRS), len(LOG2_DECAYS), 4))
    write_sweep(tmp_path / "adam", "adam", diagonal, seeds=4, spread=lambda i, j, seed: 0.03 * signs[i, j, seed])
    first, _, _ = report([tmp_path / "adam"], tmp_path / "a", capsys)
    second, _, _ = report([tmp_path / "adam"], tmp_path / "b", capsys)
    assert first == second  # fixed RNG: the same interval every time
    (heatmap,) = heatmaps_from_table(read_results(tmp_path / "adam"))
    slopes = whole_seed_bootstrap_slopes(heatmap.lrs, heatmap.decays, heatmap.seed_values)
    assert slopes.shape == (BOOTSTRAP_RESAMPLES,) and BOOTSTRAP_RESAMPLES >= 1000
    assert np.array_equal(slopes, whole_seed_bootstrap_slopes(heatmap.lrs, heatmap.decays, heatmap.seed_values))
    assert np.std(slopes) > 0.01  # the resamples differ: seeds are drawn, not the means reused
    other = whole_seed_bootstrap_slopes(heatmap.lrs, heatmap.decays, heatmap.seed_values, rng_seed=1)
    assert not np.array_equal(slopes, other)


def test_one_seed_gives_no_interval_and_no_verdict(tmp_path: Path, capsys) -> None:
    write_sweep(tmp_path / "sgd", "sgd", diagonal, seeds=1)
    (row,), _, printed = report([tmp_path / "sgd"], tmp_path / "out", capsys)
    assert float(row["slope"]) == pytest.approx(-1.0, abs=1e-3)
    assert math.isnan(float(row["slope_lo"])) and math.isnan(float(row["slope_hi"]))
    assert row["verdict"] == "undecided: 1 seed, fewer than 3"
    assert "95% whole-seed bootstrap: none (one seed)" in printed


# -- the row optimum -----------------------------------------------------------------------------
@pytest.mark.parametrize("optimum", [-7.5, -7.3])
def test_parabola_recovers_an_optimum_between_grid_points(tmp_path: Path, capsys, optimum: float) -> None:
    """A smooth basin that is not a parabola, with its optimum between two grid columns."""

    def basin(a: float, d: float | None) -> float:
        return 0.20 + 0.01 * (d - optimum) ** 2 + 0.002 * (d - optimum) ** 4 + 0.002 * (a + 5) ** 2

    write_sweep(tmp_path / "sgdw", "sgdw", basin)
    (row,), optima, _ = report([tmp_path / "sgdw"], tmp_path / "out", capsys)
    assert len(optima) == len(LOG2_LRS)
    for line in optima:
        assert float(line["log2_decay_star"]) == pytest.approx(optimum, abs=0.05)
        assert line["edge"] == "0"
    # the argmin alone is a quarter of a grid step off or more (-7.5: the tie goes to -8; -7.3: -7)
    (heatmap,) = heatmaps_from_table(read_results(tmp_path / "sgdw"))
    argmins = np.log2(np.array(heatmap.decays))[np.argmin(heatmap.values, axis=1)]
    assert np.all(np.abs(argmins - optimum) > 0.25)
    assert float(row["slope"]) == pytest.approx(0.0, abs=1e-6)


def test_parabola_optimum_moves_with_the_lr_between_grid_points(tmp_path: Path, capsys) -> None:
    """log2 lambda* = -7.3 - 0.4 (log2 lr + 5): the continuous slope is -0.4, the argmin's is not."""

    def tilted(a: float, d: float | None) -> float:
        return 0.20 + 0.01 * (d + 7.3 + 0.4 * (a + 5)) ** 2

    write_sweep(tmp_path / "sgd", "sgd", tilted, spread=0.0002)
    (row,), optima, _ = report([tmp_path / "sgd"], tmp_path / "out", capsys)
    for a, line in zip(LOG2_LRS, optima, strict=True):
        assert float(line["log2_lr"]) == a
        assert float(line["log2_decay_star"]) == pytest.approx(-7.3 - 0.4 * (a + 5), abs=0.01)
    assert float(row["slope"]) == pytest.approx(-0.4, abs=0.01)
    assert float(row["slope_lo"]) <= -0.4 <= float(row["slope_hi"])
    assert abs(float(row["argmin_slope"]) + 0.4) > 0.05


def test_edge_minimum_is_flagged_and_is_the_argmin(tmp_path: Path, capsys) -> None:
    """Row 2^-7 is best at the largest decay, row 2^-3 at the smallest; row 2^-5 is next to a failed cell."""

    def edges(a: float, d: float | None) -> float:
        target = {-7: -4.0, -6: -8.4, -5: -9.2, -4: -9.6, -3: -14.0}[a]
        return 0.20 + 0.01 * (d - target) ** 2

    write_sweep(tmp_path / "adam", "adam", edges, spread=0.0002, failed=((-5, -10),))
    (row,), optima, printed = report([tmp_path / "adam"], tmp_path / "out", capsys)
    by_lr = {float(line["log2_lr"]): line for line in optima}
    assert by_lr[-7]["edge"] == "1" and float(by_lr[-7]["log2_decay_star"]) == -6.0
    assert by_lr[-3]["edge"] == "1" and float(by_lr[-3]["log2_decay_star"]) == -12.0
    # -9.2 is best among the cells left, but its neighbour 2^-10 failed: no parabola, the argmin
    assert by_lr[-5]["edge"] == "1" and float(by_lr[-5]["log2_decay_star"]) == -9.0
    assert by_lr[-6]["edge"] == "0" and float(by_lr[-6]["log2_decay_star"]) == pytest.approx(-8.4, abs=1e-3)
    assert by_lr[-4]["edge"] == "0" and float(by_lr[-4]["log2_decay_star"]) == pytest.approx(-9.6, abs=1e-3)
    assert int(row["edge_rows"]) == 3
    assert "3 edge rows" in printed


def test_decay_zero_column_is_not_on_the_log_axis(tmp_path: Path, capsys) -> None:
    """A decay-0 column better than every other cell changes neither the optima nor the slope."""

    def best_at_zero(a: float, d: float | None) -> float:
        return 0.05 if d is None else diagonal(a, d)

    write_sweep(tmp_path / "with", "sgd", best_at_zero, spread=0.0005, log2_decays=(None, *LOG2_DECAYS))
    write_sweep(tmp_path / "without", "sgd", diagonal, spread=0.0005)
    with_zero, optima_with, _ = report([tmp_path / "with"], tmp_path / "a", capsys)
    without, optima_without, _ = report([tmp_path / "without"], tmp_path / "b", capsys)
    for key in ("slope", "slope_lo", "slope_hi", "argmin_slope"):
        assert with_zero[0][key] == without[0][key]
    assert [r["log2_decay_star"] for r in optima_with] == [r["log2_decay_star"] for r in optima_without]


# -- headroom, basin -----------------------------------------------------------------------------
def test_headroom_is_decay_zero_minus_best_cell_in_points(tmp_path: Path, capsys) -> None:
    write_sweep(tmp_path / "sgd", "sgd", diagonal, spread=0.0005, log2_decays=(None, *LOG2_DECAYS))
    write_sweep(tmp_path / "sgdw", "sgdw", vertical, spread=0.0005)  # no decay-0 column
    (sgd, sgdw), _, printed = report([tmp_path / "sgd", tmp_path / "sgdw"], tmp_path / "out", capsys)
    # best cell: lr 2^-5 (the weak lr preference), decay 2^-9, error 0.20; its row's decay-0 cell: 0.30
    assert float(sgd["best"]) == pytest.approx(0.20, abs=1e-4)
    assert float(sgd["best_lr"]) == 2.0**-5 and float(sgd["best_decay"]) == 2.0**-9
    assert float(sgd["headroom"]) == pytest.approx(10.0, abs=1e-3)
    assert sgdw["headroom"] == ""
    assert "headroom +10.00 pp" in printed and "headroom n/a (no decay-0 column)" in printed


def _sweep_heatmap(tmp_path: Path, best_spread: float):
    """sgd panel whose best cell (lr 2^-5, decay 2^-9) has seeds +-best_spread, the others +-0.0005.

    The diagonal is steeper than :func:`diagonal` so that no cell lies on the margin's edge.
    """

    def steep(a: float, d: float | None) -> float:
        return 0.20 + 0.012 * (a + d + 14) ** 2 + 0.002 * (a + 5) ** 2

    def spread(i: int, j: int, seed: int) -> float:
        size = best_spread if (LOG2_LRS[i], LOG2_DECAYS[j]) == (-5, -9) else 0.0005
        return size * (-1, 0, 1)[seed]

    write_sweep(tmp_path / "sgd", "sgd", steep, spread=spread)
    (heatmap,) = heatmaps_from_table(read_results(tmp_path / "sgd"))
    return heatmap


@pytest.mark.parametrize("best_spread", [0.001, 0.04])
def test_basin_contains_exactly_the_cells_within_the_margin(tmp_path: Path, capsys, best_spread: float) -> None:
    heatmap = _sweep_heatmap(tmp_path, best_spread)
    # margin = max(1 point, 2 standard errors of the best cell's 3-seed mean)
    standard_error = np.std([-best_spread, 0.0, best_spread], ddof=1) / math.sqrt(3)
    margin = max(0.01, 2 * standard_error)
    assert (margin > 0.01) == (best_spread > 0.01)  # the two cases: the floor, then the 2 SE
    assert heatmap.basin_margin() == pytest.approx(margin)
    expected = heatmap.values <= 0.20 + margin + 1e-9
    assert np.array_equal(heatmap.basin(), expected)
    assert 1 < expected.sum() < expected.size
    (row,), _, _ = report([tmp_path / "sgd"], tmp_path / "out", capsys)
    assert float(row["basin_margin"]) == pytest.approx(100 * margin, abs=1e-4)
    assert int(row["basin_cells"]) == int(expected.sum())


def _inside(segments, x: float, y: float) -> bool:
    """Ray casting to the right: an odd number of vertical outline segments crossed means inside."""
    crossings = 0
    for (x0, y0), (x1, y1) in segments:
        if x0 == x1 and x0 > x and min(y0, y1) < y < max(y0, y1):
            crossings += 1
    return crossings % 2 == 1


def test_basin_outline_encloses_exactly_the_basin_cells() -> None:
    mask = np.array(
        [
            [0, 1, 1, 1, 0],
            [0, 1, 0, 1, 0],  # a hole in the middle
            [1, 1, 1, 1, 0],
            [0, 0, 0, 0, 1],  # a separate island touching only at a corner
        ],
        dtype=bool,
    )
    segments = basin_outline(mask)
    assert all(abs(x0 - x1) + abs(y0 - y1) == 1.0 for (x0, y0), (x1, y1) in segments)  # unit cell sides
    for i, j in np.ndindex(mask.shape):
        assert _inside(segments, j, i) == mask[i, j], (i, j)
    # each side once: 4 per cell minus 2 per shared side
    shared = (mask[:, 1:] & mask[:, :-1]).sum() + (mask[1:] & mask[:-1]).sum()
    assert len(segments) == 4 * mask.sum() - 2 * shared
    assert basin_outline(np.zeros((2, 2), dtype=bool)) == []
    assert not basin_mask(np.full((2, 2), np.nan), 0.01).any()


def test_every_heatmap_draws_its_basin_and_a_readable_title(tmp_path: Path) -> None:
    from matplotlib.collections import LineCollection

    write_sweep(tmp_path / "sgd", "sgd", diagonal, spread=0.0005)
    write_sweep(tmp_path / "tiny", "sgdw", vertical, seeds=1, log2_lrs=(-3, -2), log2_decays=(None, -8))
    heatmaps = heatmaps_from_table(read_results(tmp_path / "sgd")) + heatmaps_from_table(
        read_results(tmp_path / "tiny")
    )
    figure = plot_heatmaps(heatmaps, tmp_path / "heatmap.png")
    panels = [ax for ax in figure.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2
    for ax, heatmap in zip(panels, heatmaps, strict=True):
        (outline,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        drawn = sorted(tuple(map(tuple, s)) for s in outline.get_segments())
        assert drawn == sorted(basin_outline(heatmap.basin()))
        title = ax.get_title()
        assert "nan" not in title.lower() and "top-" not in title
        assert heatmap.title in title and ("95%" in title or "no interval" in title)
        numbers = [t for t in ax.texts if t.get_text().replace(".", "").isdigit()]
        assert len(numbers) == np.isfinite(heatmap.values).sum()
        assert min(t.get_fontsize() for t in numbers) >= 8
    assert "coupled" in panels[0].get_title().splitlines()[-1]
    assert "undecided: 0 usable lr rows, fewer than 3" in panels[1].get_title()


# -- verdict, decay type, coupling.csv -----------------------------------------------------------
@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (-1.2, -0.51, "coupled"),
        (-1.2, -0.5, "undecided: interval straddles -0.5"),
        (-1.2, 0.1, "undecided: interval straddles -0.5"),
        (-0.49, 0.49, "decoupled"),
        (0.0, 0.2, "decoupled"),
        (-0.5, 0.2, "undecided: interval straddles -0.5"),  # the old rule's "decoupled" at -0.49 no longer passes
        (-0.4, 0.51, "undecided: interval straddles +0.5"),
        (-0.6, 0.6, "undecided: interval straddles -0.5; interval straddles +0.5"),
        (0.55, 0.9, "undecided: interval above +0.5 (the optimum rises with the lr)"),
        (math.nan, math.nan, "undecided: no interval"),
    ],
)
def test_verdict_thresholds(lo: float, hi: float, expected: str) -> None:
    assert classify(lo, hi) == expected
    assert classify(lo - 0.3, hi - 0.3, margin=0.8).startswith(("coupled", "decoupled", "undecided"))


def test_verdict_margin_is_the_given_one() -> None:
    assert classify(-0.7, 0.7, margin=0.75) == "decoupled"
    assert classify(-0.7, 0.7, margin=0.5).startswith("undecided")
    assert classify(-1.2, -0.6, margin=0.75) == "undecided: interval straddles -0.75"


def test_decay_type_from_the_table_the_paper_names_and_the_flags() -> None:
    assert [decay_type_of(name) for name in ("adam", "sgd")] == ["L2", "L2"]
    assert {decay_type_of(name) for name in ("adamw", "sgdw", "adamwr", "sgdwr")} == {"decoupled"}
    assert decay_type_of("lookaheadw") == ""  # never guessed from a name ending in "w"
    assert decay_type_of("lookaheadw", recorded="1") == "decoupled"  # what the cell recorded
    assert decay_type_of("adamw", recorded="0") == "L2"  # the record wins over the paper's names
    assert decay_type_of("lookaheadw", decoupled=["lookaheadw"]) == "decoupled"
    assert decay_type_of("adamw", recorded="1", coupled=["adamw"]) == "L2"  # the flags win
    assert decay_type_of("") == ""


def test_coupling_csv_columns_and_verdicts(tmp_path: Path, capsys) -> None:
    write_sweep(tmp_path / "sgd", "sgd", diagonal, spread=0.0005, log2_decays=(None, *LOG2_DECAYS))

    def drifting(a: float, d: float | None) -> float:  # decoupled, but lambda* rises with lr: slope +0.6
        return 0.20 + 0.01 * (d + 9 - 0.6 * (a + 5)) ** 2

    write_sweep(tmp_path / "adamw", "adamw", drifting, spread=0.0005)
    signs = np.random.default_rng(5).choice([-1.0, 1.0], size=(len(LOG2_LRS), len(LOG2_DECAYS), 4))
    write_sweep(tmp_path / "sgdw", "sgdw", lambda a, d: 0.30 + 0.001 * (d + 9) ** 2, seeds=4,
                spread=lambda i, j, seed: 0.05 * signs[i, j, seed])  # fmt: skip
    write_sweep(tmp_path / "custom", "lion", diagonal, spread=0.0005)
    paths = [tmp_path / n for n in ("sgd", "adamw", "sgdw", "custom")]
    rows, _, printed = report(paths, tmp_path / "out", capsys)
    with (tmp_path / "out" / "coupling.csv").open() as handle:
        header = next(csv.reader(handle))
    assert header[: len(ORIGINAL_COLUMNS)] == ORIGINAL_COLUMNS  # the old columns stay first, in order
    assert {"slope_lo", "slope_hi", "seeds", "headroom", "verdict", "argmin_slope", "edge_rows", "interval",
            "per_seed_t_lo", "per_cell_hi", "fragile", "outcome", "rows_used", "rows_censored"} <= set(header)
    by_panel = {row["panel"]: row for row in rows}
    assert by_panel["sgd"]["verdict"] == "coupled" and by_panel["sgd"]["interval"] == "whole_seed"
    assert by_panel["adamw"]["verdict"] == "undecided: interval above +0.5 (the optimum rises with the lr)"
    assert by_panel["adamw"]["outcome"] == "undecided"
    assert float(by_panel["adamw"]["slope"]) == pytest.approx(0.6, abs=0.01)
    assert by_panel["sgdw"]["verdict"].startswith("undecided: interval straddles")
    assert float(by_panel["sgdw"]["slope_hi"]) - float(by_panel["sgdw"]["slope_lo"]) > 1.0
    # an optimizer the table does not name: the verdict describes the data, the outcome needs the type
    assert by_panel["lion"]["decay_type"] == "" and by_panel["lion"]["verdict"] == "coupled"
    assert by_panel["lion"]["outcome"] == "undecided"
    assert [int(by_panel[p]["seeds"]) for p in ("sgd", "adamw", "sgdw", "lion")] == [3, 3, 4, 3]
    for panel, row in by_panel.items():
        assert f"verdict ({row['decay_type'] or 'decay type unknown'}, margin 0.5): {row['verdict']}" in printed, (
            panel
        )
    # the user names the unknown optimizer's decay type
    rows, _, printed = report(paths, tmp_path / "out2", capsys, "--coupled", "lion")
    assert {r["panel"]: r for r in rows}["lion"]["outcome"] == "as the paper"


def test_report_rejects_an_optimizer_named_both_coupled_and_decoupled(tmp_path: Path, capsys) -> None:
    write_sweep(tmp_path / "sgd", "sgd", diagonal, seeds=1)
    assert main(["report", str(tmp_path / "sgd"), "--coupled", "sgd,lion", "--decoupled", "lion"]) == 2
    assert "lion named both --coupled and --decoupled" in capsys.readouterr().err


def test_rerun_replaces_the_reports_tensorboard_events(tmp_path: Path, capsys) -> None:
    write_sweep(tmp_path / "sgd", "sgd", diagonal, spread=0.0005)
    out = tmp_path / "out"
    legacy = out / "tensorboard" / "events.out.tfevents.1700000000.host.1.0"  # an older report's file
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"")
    for _ in range(3):
        report([tmp_path / "sgd"], out, capsys)
    files = sorted((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1 and files[0].name.endswith(".sweep")
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert len(events.Images("sweep/heatmap/final_test_err")) == 1

"""docs/replication/fashion_mnist/figures_round2.py (round 2's figures) on synthetic parts whose answer is known,
in the structures and CSV formats summarize_round2.py reads: the drawn means, the 95 % t bands and error bars (from
the equations here), the no-cost margin, B.1's parabola vertex and its well-trained rule, Fig. 4's "not run" rows,
the seed counts in the titles, and the PNGs summarize_round2.py's main writes next to round2_summary.csv."""

from __future__ import annotations

import csv
import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from matplotlib.text import Text
from paths import REPO
from scipy import stats
from sweep_tables import write_part

sys.path.insert(0, str(REPO / "docs/replication/fashion_mnist"))
figures = importlib.import_module("figures_round2")
summary = figures.s2  # the summarize_round2 module the figures read with (one copy, whoever imported it first)

LR, WD, EPOCHS = "model.optimizer.lr", "model.optimizer.weight_decay", "trainer.max_epochs"
FIG13_SEEDS = tuple(range(200, 205))
FIG4_SEEDS = tuple(range(300, 308))
B1_SEEDS = (400, 401, 402)


# -- expected values, from the equations ---------------------------------------------------------------
def _t(values) -> tuple[float, float, float]:
    """mean -+ t(0.975, n - 1) SD / sqrt(n)."""
    x = np.asarray(values, dtype=np.float64)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def _artist(fig, gid: str):
    found = [a for a in fig.findobj() if a.get_gid() == gid]
    assert len(found) == 1, f"{gid}: {len(found)} artists"
    return found[0]


def _band_at(fig, gid: str, x: float) -> list[float]:
    """The band's lower and upper bound at ``x`` (fill_between's outline passes x twice: once per bound)."""
    vertices = _artist(fig, gid).get_paths()[0].vertices
    return sorted({float(y) for vx, y in vertices if vx == pytest.approx(x)})


def _errorbar(fig, gid: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """An error bar's x, y (its points) and its bars' segments."""
    container = next(c for ax in fig.axes for c in ax.containers if c.lines[0].get_gid() == gid)
    line, _, bars = container.lines
    return line.get_xdata(), line.get_ydata(), list(bars[0].get_segments())


def _texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


# -- writing parts as run_round2.py and summarize_round2.py do ------------------------------------------
def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _fig13_points(seeds=FIG13_SEEDS, epochs: int = 6) -> dict[str, dict[int, list[tuple]]]:
    """Per optimizer and seed, (epoch, training loss, validation error, test error) as summarize_round2.curves."""
    return {name: {s: [(e, 2.0 * 0.6**e * (1 + 0.05 * k) * (1.3 if name == "adam" else 1.0), math.nan,
                        0.30 - 0.02 * e + 0.002 * k * k * (-1) ** e + (0.01 if name == "adam" else 0.0))
                       for e in range(1, epochs + 1)] for k, s in enumerate(seeds)}
            for name in ("adam", "adamw")}


def _write_fig13(docs: Path, points: dict[str, dict[int, list[tuple]]]) -> None:
    for name, by_seed in points.items():
        part = f"fig13_{name}"
        write_part(docs, part, [LR, WD], [((2.0**-8, 2.0**-8), s, {"final_test_err": round(p[-1][3], 6),
                                                                  "final_train_loss": 0.1})
                                        for s, p in by_seed.items()])
        _csv(docs / part / "curves.csv", ["seed", "epoch", "train_loss", "val_err", "test_err"],
             [[s, e, loss, "", err] for s, p in by_seed.items() for e, loss, _, err in p])


def _fig4_data(diffs30: list[float], diffs70: list[float]) -> tuple[dict, dict]:
    """Snapshots (seed -> period end -> error) and cosine runs (length -> seed -> error), differences in points;
    a cosine run as long as the first period too (the same computation as the snapshot, never compared)."""
    cosine = {10: {s: 0.40 for s in FIG4_SEEDS}, 30: {s: 0.20 + 0.01 * k for k, s in enumerate(FIG4_SEEDS)},
              70: {s: 0.15 + 0.005 * k for k, s in enumerate(FIG4_SEEDS)}}
    snapshots = {s: {10: 0.40, 30: cosine[30][s] + d30 / 100, 70: cosine[70][s] + d70 / 100}
                 for s, d30, d70 in zip(FIG4_SEEDS, diffs30, diffs70, strict=True)}
    return snapshots, cosine


def _write_fig4(docs: Path, part: str, snapshots: dict, cosine: dict) -> None:
    write_part(docs, part, [LR, WD], [((2.0**-8, 2.0**-8), s, {"final_test_err": 0.2}) for s in snapshots])
    _csv(docs / part / "anytime.csv", ["run", "seed", "epoch", "val_err", "test_err"],
         [[f"cell_0_seed_{s}", s, e, err, err] for s, errs in snapshots.items() for e, err in errs.items()])
    write_part(docs, f"{part}_cosine", [EPOCHS, LR, WD],
             [((e, 2.0**-8, 2.0**-8), s, {"final_test_err": round(err, 6)}) for e, errs in cosine.items()
              for s, err in errs.items()])


B1_VERTEX = {25: -8.3, 50: -8.6, 100: -7.7}  # between the grid's half octaves: the argmin is elsewhere
B1_SHIFT = {400: -0.1, 401: 0.0, 402: 0.1}  # per seed; their mean is 0, so the mean's vertex is B1_VERTEX


def _b1_error(t: int, j: int, seed: int) -> float:
    # the mean over seeds of (x - v - e_s)^2 is (x - v)^2 + mean(e_s^2): a parabola with its vertex at v
    return 0.10 + 0.01 * (-8 + j / 2 - B1_VERTEX[t] - B1_SHIFT[seed]) ** 2 + 0.002 * (seed - 400)


def _write_b1(docs: Path, poorly_trained: int | None = 100, seeds=B1_SEEDS) -> None:
    cells = [((t, 2.0**-8, 2.0**-8 * 2.0 ** (j / 2)), seed,
              {"final_test_err": _b1_error(t, j, seed), "final_val_err": _b1_error(t, j, seed),
               "final_train_loss": 0.3 if t == poorly_trained else 0.1})
             for t in B1_VERTEX for j in range(-6, 7) for seed in seeds]
    write_part(docs, "b1_adamw", [EPOCHS, LR, WD], cells)


# -- Figs. 1/3 ---------------------------------------------------------------------------------------------
def test_fig13_draws_the_seed_mean_with_the_t_interval_band_at_every_epoch(tmp_path: Path) -> None:
    points = _fig13_points()
    fig = figures.draw_fig13(points)
    for name in ("adam", "adamw"):
        test = np.array([[100 * p[3] for p in points[name][s]] for s in FIG13_SEEDS])
        loss = np.array([[p[1] for p in points[name][s]] for s in FIG13_SEEDS])
        mean = _artist(fig, f"{name} test error mean")
        assert list(mean.get_xdata()) == [1, 2, 3, 4, 5, 6]
        assert mean.get_ydata() == pytest.approx(test.mean(axis=0))
        for epoch in (2, 5):
            _, lo, hi = _t(test[:, epoch - 1])
            assert _band_at(fig, f"{name} test error band", epoch) == [pytest.approx(lo), pytest.approx(hi)]
        # panel (c): per-epoch means against each other
        curve = _artist(fig, f"{name} error vs loss")
        assert curve.get_xdata() == pytest.approx(loss.mean(axis=0))
        assert curve.get_ydata() == pytest.approx(test.mean(axis=0))
    # the loss Fig. 3 compares at: the highest of the runs' lowest losses (Adam's slowest seed at its last epoch)
    level = max(p[-1][1] for by_seed in points.values() for p in by_seed.values())
    assert _artist(fig, "matched loss").get_xdata()[0] == pytest.approx(level)
    title = fig._suptitle.get_text()
    assert "5 seeds" in title and "95 % t interval" in title and "4 df" in title


def test_fig13_training_loss_band_and_the_summary_lines_below_the_panels(tmp_path: Path) -> None:
    points = _fig13_points()
    line = summary.Line("fig1", "test error Adam - AdamW (points)", 1.0, 0.5, 1.5, 0.6, 1.4, 5, "reproduced")
    fig = figures.draw_fig13(points, [line])
    loss = np.array([[p[1] for p in points["adamw"][s]] for s in FIG13_SEEDS])
    mean = _artist(fig, "adamw training loss mean")
    assert mean.get_ydata() == pytest.approx(loss.mean(axis=0))
    _, lo, hi = _t(loss[:, 2])
    assert _band_at(fig, "adamw training loss band", 3) == [pytest.approx(lo), pytest.approx(hi)]
    assert mean.axes.get_yscale() == "log"
    assert "Fig. 1" in fig._supxlabel.get_text() and "+1.00 points" in fig._supxlabel.get_text()
    assert "reproduced" in fig._supxlabel.get_text()


# -- Fig. 4 ------------------------------------------------------------------------------------------------
def test_fig4_paired_differences_with_their_t_interval_against_the_registered_margin() -> None:
    diffs30 = [0.3, 0.1, 0.5, 0.2, 0.4, 0.3, 0.2, 0.4]   # t interval below +1: reproduced
    diffs70 = [2.8, 3.1, 3.0, 2.9, 3.2, 3.0, 2.7, 3.3]   # above 0 and past +1: not reproduced
    snapshots, cosine = _fig4_data(diffs30, diffs70)
    fig = figures.draw_fig4({("adamwr", "norm"): (snapshots, cosine)})
    for end, diffs in ((30, diffs30), (70, diffs70)):
        assert sorted(_artist(fig, f"diffs {end}").get_ydata()) == pytest.approx(sorted(diffs))
        _, y, bars = _errorbar(fig, f"difference {end}")
        mean, lo, hi = _t(diffs)
        assert y == pytest.approx([mean])
        assert sorted(bars[0][:, 1]) == [pytest.approx(lo), pytest.approx(hi)]
    assert "diffs 10" not in {a.get_gid() for a in fig.findobj()}  # the first period end is never compared
    margin = _artist(fig, "margin")
    assert summary.FIG4_MARGIN == 1.0 and list(margin.get_ydata()) == [summary.FIG4_MARGIN] * 2
    ticks = [t.get_text() for t in margin.axes.get_xticklabels()]
    assert ticks == ["epoch 30\nreproduced", "epoch 70\nnot reproduced"]
    # left panel: the snapshot at every period end, the cosine runs at their lengths, each mean with a t bar
    _, y, _ = _errorbar(fig, "snapshot")
    assert y == pytest.approx([40.0, *(100 * np.mean([snapshots[s][e] for s in FIG4_SEEDS]) for e in (30, 70))])
    _, y, bars = _errorbar(fig, "cosine")
    cos70 = [100 * v for v in cosine[70].values()]
    assert y[2] == pytest.approx(np.mean(cos70))
    assert sorted(bars[2][:, 1]) == [pytest.approx(_t(cos70)[1]), pytest.approx(_t(cos70)[2])]
    texts = _texts(fig)
    assert "AdamWR (normalized decay) vs AdamW cosine runs, 8 seeds" in texts and "7 df" in texts
    assert texts.count("not run") == 3  # AdamWR raw and both SGDWR arms were not given


def test_fig4_a_family_that_was_not_run_gets_a_not_run_panel(tmp_path: Path) -> None:
    # CI's tiny suite: AdamWR only
    snapshots, cosine = _fig4_data([0.2] * 4 + [0.4] * 4, [0.1] * 4 + [0.3] * 4)
    for arm in ("norm", "raw"):
        _write_fig4(tmp_path, f"fig4_adamwr_{arm}", snapshots, cosine)
    parts = figures.fig4_parts(tmp_path)
    assert {k: isinstance(v, tuple) for k, v in parts.items()} == {
        ("adamwr", "norm"): True, ("adamwr", "raw"): True, ("sgdwr", "norm"): False, ("sgdwr", "raw"): False}
    fig = figures.draw_fig4(parts)
    for arm in ("norm", "raw"):
        panel = _artist(fig, f"sgdwr {arm} not run").get_text()
        assert panel.startswith(f"SGDWR ({figures.ARM_NAMES[arm]}) vs SGDW cosine runs: not run")
        assert f"fig4_sgdwr_{arm}_cosine" in panel
    assert "adamwr norm not run" not in {a.get_gid() for a in fig.findobj()}
    _, y, _ = _errorbar(fig, "difference 70")
    assert y == pytest.approx([0.2])  # the norm arm's row: the cosine runs read back from results.csv


# -- Appendix B.1 ----------------------------------------------------------------------------------------
def test_b1_marks_each_lengths_parabola_vertex_and_dashes_the_one_not_well_trained(tmp_path: Path) -> None:
    _write_b1(tmp_path, poorly_trained=100)
    rows = figures._rows(tmp_path, "b1_adamw")
    lengths, decays, seeds, tables = summary.b1_tables(rows)
    fig = figures.draw_b1(lengths, decays, seeds, tables, summary.run_lengths(lengths, decays, tables))
    x = -8 + np.arange(-6, 7) / 2
    for t, vertex in B1_VERTEX.items():
        marker = _artist(fig, f"T={t} optimum")
        assert marker.get_xdata()[0] == pytest.approx(vertex, abs=1e-9)  # not the grid's argmin
        errs = np.array([[100 * _b1_error(t, j, s) for s in B1_SEEDS] for j in range(-6, 7)])
        line = _artist(fig, f"T={t} mean")
        assert line.get_xdata() == pytest.approx(x)
        assert line.get_ydata() == pytest.approx(errs.mean(axis=1), abs=1e-4)  # results.csv keeps 6 digits
        _, lo, hi = _t(errs[3])
        assert _band_at(fig, f"T={t} band", x[3]) == [pytest.approx(lo, abs=1e-4), pytest.approx(hi, abs=1e-4)]
        assert line.get_linestyle() == ("--" if t == 100 else "-")
        assert ("not well trained" in line.get_label()) == (t == 100)
        assert f"{vertex:+.2f}".replace("-", "\u2212") in line.get_label()
    title = fig._suptitle.get_text()
    assert "3 seeds" in title and "95 % t interval" in title and "2 df" in title


# -- writing: write_figures and summarize_round2's main ------------------------------------------------
def _all_parts(docs: Path) -> None:
    _write_fig13(docs, _fig13_points())
    snapshots, cosine = _fig4_data([0.3] * 4 + [0.1] * 4, [0.5] * 8)
    _write_fig4(docs, "fig4_adamwr_norm", snapshots, cosine)
    _write_b1(docs)


def test_write_figures_writes_three_pngs_at_readme_width(tmp_path: Path, capsys) -> None:
    _all_parts(tmp_path)
    written = figures.write_figures(tmp_path, tmp_path / "out")
    assert [p.name for p in written] == ["fig13.png", "fig4.png", "b1.png"]
    for path in written:
        height, width = imread(path).shape[:2]
        assert width == figures.WIDTH * figures.DPI == 900 and height > 300
    assert capsys.readouterr().out.splitlines() == [f"wrote fig13.png, fig4.png, b1.png in {tmp_path / 'out'}"]


def test_summarize_round2_main_writes_figures_next_to_round2_summary(tmp_path: Path, capsys) -> None:
    _all_parts(tmp_path)
    assert summary.main(["--docs", str(tmp_path), "--runs", str(tmp_path / "no_runs")]) == 0
    assert (tmp_path / "round2_summary.csv").is_file()
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["b1.png", "fig13.png", "fig4.png"]
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote fig13.png, fig4.png, b1.png in {tmp_path / 'figures'}"


def test_a_figure_without_its_data_is_skipped_with_one_line(tmp_path: Path, capsys) -> None:
    _write_b1(tmp_path, seeds=(400,))  # one seed: drawn, without intervals
    assert summary.main(["--docs", str(tmp_path), "--runs", str(tmp_path / "no_runs")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [p.name for p in (tmp_path / "figures").iterdir()] == ["b1.png"]
    skipped = [line for line in out if line.startswith("figures: ")]
    assert len(skipped) == 2 and "fig13.png not drawn" in skipped[0] and "fig4.png not drawn" in skipped[1]
    rows = figures._rows(tmp_path, "b1_adamw")
    lengths, decays, seeds, tables = summary.b1_tables(rows)
    fig = figures.draw_b1(lengths, decays, seeds, tables, summary.run_lengths(lengths, decays, tables))
    assert "1 seed\n" in fig._suptitle.get_text() and "none: fewer than 2 seeds" in fig._suptitle.get_text()

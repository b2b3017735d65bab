"""``wdlab report``: coupling numbers on synthetic tables whose answer is known, heatmaps, curves."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from paths import QUICKSTART
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny_runs import builtin_data

from wdlab.cli import main
from wdlab.experiments.coupling import coupling
from wdlab.experiments.heatmaps import heatmaps_from_table
from wdlab.experiments.plots import plot_anytime_curves, plot_heatmaps, plot_learning_curves
from wdlab.experiments.report import write_sweep_report
from wdlab.experiments.results import find_runs, read_scalars

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LOG2_LRS = np.arange(-8, -1)  # 7 rows
LOG2_DECAYS = np.arange(-12, -5)  # 7 columns


def _table(error) -> tuple[list[float], list[float], np.ndarray]:
    lrs = [2.0**e for e in LOG2_LRS]
    decays = [2.0**e for e in LOG2_DECAYS]
    values = np.array([[error(a, d) for d in LOG2_DECAYS] for a in LOG2_LRS], dtype=np.float64)
    return lrs, decays, values


def coupled(log_lr: float, log_decay: float) -> float:
    """L2-like: only the product lr * decay matters (plus a weak preference for lr = 2^-5)."""
    return 0.05 + 0.01 * (log_lr + log_decay + 14) ** 2 + 0.001 * (log_lr + 5) ** 2


def decoupled(log_lr: float, log_decay: float) -> float:
    """Decoupled: the best decay (2^-9) is the same for every lr."""
    return 0.05 + 0.01 * (log_decay + 9) ** 2 + 0.001 * (log_lr + 5) ** 2


def test_coupled_table_gives_slope_minus_one_and_negative_correlation() -> None:
    stats = coupling(*_table(coupled), top_k=10)
    # per row the best decay is 2^(-14 - log2 lr) wherever that lies on the grid: slope -1 exactly
    # over the rows where it does (-14 - (-8..-2) = -6..-12); the two rows whose optimum is at the
    # edge of the decay grid (lr 2^-8 and 2^-2) are censored: 5 rows
    assert stats.slope == pytest.approx(-1.0)
    assert stats.rows == 5
    assert [s.censored for s in stats.statuses if not s.used] == ["optimum at the grid edge"] * 2
    assert stats.correlation < -0.9
    assert stats.top_k == 10


def test_decoupled_table_gives_slope_zero_and_no_correlation() -> None:
    stats = coupling(*_table(decoupled), top_k=10)
    assert stats.slope == pytest.approx(0.0)
    assert abs(stats.correlation) < 0.2


def test_coupling_ignores_failed_cells_and_zero_decay() -> None:
    lrs, decays, values = _table(coupled)
    values[0, :] = np.nan  # a whole lr row diverged
    values[3, 2] = np.nan
    # a decay-0 column that would otherwise be the best everywhere: it has no log2 and is left out
    stats_without = coupling(lrs, decays, values)
    stats_with = coupling([*lrs], [0.0, *decays], np.column_stack([np.zeros(len(lrs)), values]))
    assert stats_without.rows == 4  # lr 2^-8 diverged; 2^-2 at the edge; 2^-5 next to the failed cell
    assert stats_with.slope == pytest.approx(stats_without.slope)
    assert stats_with.correlation == pytest.approx(stats_without.correlation)


def test_coupling_is_nan_when_undefined() -> None:
    stats = coupling([0.1], [1e-3, 2e-3], np.array([[0.2, 0.1]]))
    assert math.isnan(stats.slope)  # one lr row: no slope
    assert math.isnan(stats.correlation)  # no spread in lr among the top cells
    with pytest.raises(ValueError, match="shape"):
        coupling([0.1, 0.2], [1e-3], np.zeros((1, 1)))


def _rows(optimizer: str, error, seeds: int = 3) -> list[dict[str, str]]:
    rows = []
    for a in LOG2_LRS:
        for d in LOG2_DECAYS:
            for seed in range(seeds):
                rows.append({
                    "model.optimizer.lr": repr(2.0 ** float(a)),
                    "model.optimizer.weight_decay": repr(2.0 ** float(d)),
                    "seed": str(seed),
                    "optimizer": optimizer,
                    "state": "complete",
                    # seed noise that averages out exactly over 2 or 3 seeds
                    "final_test_err": repr(float(error(a, d)) + ((-0.002, 0.002, 0.0)[seed] if seeds > 1 else 0.0)),
                    "best_test_err": "",
                    "final_train_loss": "0.1",
                })
    return rows


def test_heatmaps_from_table_one_panel_per_optimizer_mean_over_seeds() -> None:
    rows = _rows("sgd", coupled) + _rows("sgdw", decoupled)
    rows[0]["state"] = "failed"  # lr 2^-8, decay 2^-12, seed 0: only seeds 1 and 2 count
    heatmaps = heatmaps_from_table(rows)
    assert [h.title for h in heatmaps] == ["sgd", "sgdw"]
    sgd, sgdw = heatmaps
    assert sgd.lrs == tuple(2.0**e for e in LOG2_LRS) and sgd.seeds == 3
    assert sgd.seed_ids == (0, 1, 2)
    assert sgd.values[1, 1] == pytest.approx(coupled(-7, -11))
    assert sgd.values[0, 0] == pytest.approx(coupled(-8, -12) + 0.001)
    assert math.isnan(sgd.seed_values[0, 0, 0]) and sgd.seed_values[0, 0, 1] == pytest.approx(coupled(-8, -12) + 0.002)
    assert sgd.coupling().slope == pytest.approx(-1.0)
    assert sgdw.coupling().slope == pytest.approx(0.0)


def test_heatmaps_from_table_explains_unknown_columns() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        heatmaps_from_table(_rows("sgd", coupled), metric="accuracy")
    rows = [{k.replace("model.optimizer.lr", "model.optimizer.alpha"): v for k, v in row.items()}
            for row in _rows("sgd", coupled)]
    with pytest.raises(ValueError, match="--lr_key"):
        heatmaps_from_table(rows)
    assert heatmaps_from_table(rows, lr_key="model.optimizer.alpha")[0].coupling().slope == pytest.approx(-1.0)


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with (path / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_write_sweep_report_png_coupling_csv_and_tensorboard_image(tmp_path: Path) -> None:
    _write_csv(tmp_path / "sgd", _rows("sgd", coupled))
    _write_csv(tmp_path / "sgdw", _rows("sgdw", decoupled))
    out = tmp_path / "report"
    results = write_sweep_report([tmp_path / "sgd", tmp_path / "sgdw"], out)
    assert [round(stats.slope, 6) for _, stats in results] == [-1.0, 0.0]
    assert (out / "heatmap.png").read_bytes()[:8] == PNG_MAGIC
    with (out / "coupling.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [row["panel"] for row in table] == ["sgd", "sgdw"]
    assert float(table[0]["slope"]) == pytest.approx(-1.0) and float(table[1]["slope"]) == pytest.approx(0.0)
    assert float(table[1]["best_decay"]) == 2.0**-9
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "sweep/heatmap/final_test_err" in events.Tags()["images"]
    image = events.Images("sweep/heatmap/final_test_err")[0]
    assert image.encoded_image_string[:8] == PNG_MAGIC and image.width > 400


def test_report_command_on_sweep_dirs(tmp_path: Path, capsys) -> None:
    _write_csv(tmp_path / "sgd", _rows("sgd", coupled))
    assert main(["report", str(tmp_path / "sgd"), "--out", str(tmp_path / "out"), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "sgd: coupling slope -1.00 (5 of 7 lr rows used), top-5 correlation" in out
    assert "verdict (L2, margin 0.5): coupled; as the paper" in out
    assert (tmp_path / "out" / "heatmap.png").is_file()


def test_report_command_rejects_bad_paths(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "neither results.csv nor TensorBoard event files" in capsys.readouterr().err


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    """Two real 3-epoch runs with warm restarts (periods end at epochs 1 and 3)."""
    root = tmp_path_factory.mktemp("curves")
    config = QUICKSTART
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name, lr in (("a", "0.001"), ("b", "0.003")):
            assert main([
                "fit", "--config", str(config), "--trainer.max_epochs", "3", "--model.optimizer.t0_epochs", "1",
                "--model.optimizer.lr", lr, *builtin_data(128, 64, 64), "--trainer.logger.init_args.name", name,
                "--trainer.enable_progress_bar", "false", "--snapshots.save", "false",
            ]) == 0  # fmt: skip
    return root / "runs"


@pytest.mark.trains
def test_read_scalars_from_real_run(two_runs: Path) -> None:
    scalars = read_scalars(two_runs / "a")
    assert [step for step, _ in scalars["anytime/err"]] == [1, 3]  # logged at step = epoch
    assert len(scalars["train/loss"]) == 3
    assert len(scalars["test/err"]) == 1


@pytest.mark.trains
def test_report_command_draws_learning_and_anytime_curves(two_runs: Path, tmp_path: Path, capsys) -> None:
    assert main(["report", str(two_runs), "--out", str(tmp_path)]) == 0
    assert "learning_curves.png" in capsys.readouterr().out
    for name in ("learning_curves.png", "anytime.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {"runs/learning_curves", "runs/anytime"} <= set(events.Tags()["images"])


@pytest.mark.trains
def test_anytime_axis_is_labelled_at_the_period_ends(two_runs: Path, tmp_path: Path) -> None:
    figure = plot_anytime_curves(find_runs(two_runs), tmp_path / "anytime.png")
    (ax,) = figure.axes
    assert ax.get_xscale() == "log"
    assert list(ax.get_xticks()) == [1, 3]  # the period ends, not the decades 10^0, 10^1
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "3"]
    assert not [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]


@pytest.mark.trains
def test_learning_curves_legend_is_clear_of_the_curves(two_runs: Path, tmp_path: Path) -> None:
    figure = plot_learning_curves(find_runs(two_runs), tmp_path / "curves.png")
    figure.canvas.draw()
    assert all(ax.get_legend() is None for ax in figure.axes)  # no legend inside a plot
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b", "end of a period (restart)"]
    box = legend.get_window_extent()
    for ax in figure.axes:
        assert box.y1 <= ax.get_tightbbox().y0  # below each plot, its tick labels included


@pytest.mark.trains
def test_report_reruns_replace_their_tensorboard_events(two_runs: Path, tmp_path: Path, capsys) -> None:
    _write_csv(tmp_path / "sgd", _rows("sgd", coupled))
    for _ in range(2):  # a sweep and runs into one folder, twice: one event file of each kind
        assert main(["report", str(tmp_path / "sgd"), str(two_runs), "--out", str(tmp_path / "out")]) == 0
    files = sorted(p.name.rsplit(".", 1)[-1] for p in (tmp_path / "out" / "tensorboard").iterdir())
    assert files == ["curves", "sweep"]
    events = EventAccumulator(str(tmp_path / "out" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    images = events.Tags()["images"]
    assert {"sweep/heatmap/final_test_err", "runs/learning_curves", "runs/anytime"} <= set(images)
    assert all(len(events.Images(tag)) == 1 for tag in images)


@pytest.mark.trains
def test_find_runs_skips_a_reports_own_tensorboard_folder(two_runs: Path) -> None:
    assert main(["report", str(two_runs)]) == 0  # default output: runs/report/
    assert (two_runs / "report" / "tensorboard").is_dir()
    assert [run.name for run in find_runs(two_runs)] == ["a", "b"]


def test_one_panel_per_value_of_any_other_grid_key() -> None:
    rows = []
    for schedule, error in (("cosine", coupled), ("constant", decoupled)):
        for row in _rows("adam", error, seeds=1):
            # results.csv lists the grid columns first, then seed: the extra key goes before it
            rows.append({"model.optimizer.schedule": schedule, **row})
    heatmaps = heatmaps_from_table(rows)
    assert [h.title for h in heatmaps] == ["adam schedule=cosine", "adam schedule=constant"]
    assert [round(h.coupling().slope, 6) for h in heatmaps] == [-1.0, 0.0]


def test_heatmap_orientation_cells_and_marks_read_back_from_the_figure(tmp_path: Path) -> None:
    """What the figure shows, read from its axes: lr up the y axis and decay along x (both ascending),
    each cell's colour value and printed number that of its (lr, decay), the red circle on the best
    cell, one lambda* diamond per lr row at the row's optimum. The optimum is off the diagonal (lr 2^-7,
    decay 2^-7 = row 1, column 5), so a transposed or flipped panel fails."""
    import re

    def skewed(log_lr: float, log_decay: float) -> float:
        return 0.05 + 0.01 * (log_decay + 7) ** 2 + 0.002 * (log_lr + 7) ** 2

    heatmap = heatmaps_from_table(_rows("sgdw", skewed))[0]
    ax = plot_heatmaps([heatmap], tmp_path / "heatmap.png").axes[0]
    exponents = [[int(m) for m in re.findall(r"-?\d+", t.get_text())] for t in ax.get_xticklabels()]
    assert exponents == [[2, e] for e in LOG2_DECAYS]  # "$2^{-12}$" ... left to right
    exponents = [[int(m) for m in re.findall(r"-?\d+", t.get_text())] for t in ax.get_yticklabels()]
    assert exponents == [[2, e] for e in LOG2_LRS]
    image = ax.get_images()[0]
    assert image.origin == "lower"  # row 0 (the smallest lr) at the bottom
    expected = np.array([[100 * skewed(a, d) for d in LOG2_DECAYS] for a in LOG2_LRS])
    np.testing.assert_allclose(np.asarray(image.get_array()), expected, rtol=1e-9)
    numbers = {(round(t.get_position()[0]), round(t.get_position()[1] - 0.17)): t.get_text() for t in ax.texts}
    assert numbers[(5, 1)] == f"{100 * skewed(-7, -7):.1f}" and numbers[(0, 6)] == f"{100 * skewed(-2, -12):.1f}"
    circles = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(circles) == 1 and list(circles[0].get_xdata()) == [5] and list(circles[0].get_ydata()) == [1]
    diamonds = [line for line in ax.get_lines() if line.get_marker() == "D"]
    assert len(diamonds) == len(LOG2_LRS)
    for row, diamond in enumerate(diamonds):
        assert diamond.get_xdata()[0] == pytest.approx(5.0, abs=1e-6)  # lambda* = 2^-7 in every row
        assert diamond.get_ydata()[0] == pytest.approx(row - 0.2)


def test_a_decay_scaling_grid_gives_one_labelled_panel_per_parameterization(tmp_path: Path, capsys) -> None:
    """``--grid model.optimizer.decay_scaling=schedule,lr,corrected``: a panel per value, named by it in the
    printed lines, coupling.csv and the figure titles. The synthetic answer: decay eta_t * lambda and the
    corrected rule keep the optimum put (slope 0); PyTorch's lr_t * lambda couples it to the lr (slope -1)."""
    rows = []
    for scaling, error in (("schedule", decoupled), ("lr", coupled), ("corrected", decoupled)):
        for row in _rows("adamw", error, seeds=2):
            grid = {k: row.pop(k) for k in ("model.optimizer.lr", "model.optimizer.weight_decay")}
            rows.append({**grid, "model.optimizer.decay_scaling": scaling, **row})  # sweep order: grid keys, seed
    _write_csv(tmp_path / "adamw", rows)
    assert main(["report", str(tmp_path / "adamw"), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    names = [f"adamw decay_scaling={s}" for s in ("schedule", "lr", "corrected")]
    for name, slope in zip(names, ("+0.00", "-1.00", "+0.00"), strict=True):
        assert f"{name}: coupling slope {slope}" in printed, printed
    with (tmp_path / "out" / "coupling.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [row["panel"] for row in table] == names
    assert [round(float(row["slope"]), 6) for row in table] == [0.0, -1.0, 0.0]
    heatmaps = heatmaps_from_table(rows)
    figure = plot_heatmaps(heatmaps, tmp_path / "heatmap.png")
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert [title.split(" (")[0] for title in titles] == names

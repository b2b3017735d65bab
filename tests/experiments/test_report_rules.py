"""The report's decision rules on synthetic sweeps with a known answer, through the real ``wdlab report``.

The seed is the unit (whole-seed bootstrap, per-seed t), the equivalence margin, the rows that enter
the slope (health, censoring), the minimum rows and seeds, the paired difference of two panels, and
no verdicts on a metric that is not an error rate.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from sweep_tables import LOG2_DECAYS, LOG2_LRS, diagonal, report, vertical, write_sweep

from wdlab.cli import main

SEEDS = 6


def _noise(seed: int, seeds: int = SEEDS, size: float = 0.0005) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, size, size=(len(LOG2_LRS), len(LOG2_DECAYS) + 1, seeds))


def _pairs(out: Path) -> list[dict[str, str]]:
    with (out / "pairs.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_true_slope_of_minus_one_with_seed_noise_is_coupled(tmp_path: Path, capsys) -> None:
    noise = _noise(1, size=0.005)  # half a point of noise per cell and seed against a 1-point-per-octave² basin
    write_sweep(tmp_path / "sgd", "sgd", diagonal, seeds=SEEDS, spread=lambda i, j, s: noise[i, j, s])
    (row,), _, printed = report([tmp_path / "sgd"], tmp_path / "out", capsys)
    assert float(row["slope"]) == pytest.approx(-1.0, abs=0.15)
    assert float(row["slope_lo"]) <= -1.0 <= float(row["slope_hi"])
    assert float(row["per_seed_t_lo"]) <= -1.0 <= float(row["per_seed_t_hi"])
    assert row["verdict"] == "coupled" and row["outcome"] == "as the paper" and row["fragile"] == "0"
    assert "95% whole-seed bootstrap: [" in printed and "95% per-seed slopes, t interval: [" in printed


def test_seeds_that_disagree_are_caught_by_whole_seed_resampling_and_missed_per_cell(tmp_path: Path, capsys) -> None:
    """Each seed has its own tilt of the basin (slopes -1.2 .. +1.2, mean 0), shared by all its cells.

    Drawing each cell's seeds on its own mixes the tilts and averages them away: a narrow interval
    around 0, "decoupled". The seeds disagree by more than the margin: the whole-seed bootstrap and the
    per-seed t interval must say undecided, and the panel must be flagged fragile.
    """
    tilts = (-1.2, -0.7, -0.2, 0.2, 0.7, 1.2)
    noise = _noise(0)

    def tilted(i: int, j: int, s: int) -> float:
        a, d = LOG2_LRS[i], LOG2_DECAYS[j]
        return 0.01 * (d + 9 - tilts[s] * (a + 5)) ** 2 - 0.01 * (d + 9) ** 2 + noise[i, j, s]

    write_sweep(tmp_path / "adamw", "adamw", vertical, seeds=SEEDS, spread=tilted)
    (row,), _, printed = report([tmp_path / "adamw"], tmp_path / "out", capsys)
    assert float(row["slope"]) == pytest.approx(0.0, abs=0.05)
    assert row["verdict_per_cell"] == "decoupled"  # the old analysis: falsely confident
    assert float(row["per_cell_hi"]) - float(row["per_cell_lo"]) < 1.0
    assert row["verdict"].startswith("undecided: interval straddles -0.5")  # whole seeds
    assert row["verdict_per_seed_t"].startswith("undecided")
    assert row["fragile"] == "1" and "fragile: the intervals disagree" in printed


def test_a_seed_offset_shared_by_all_cells_does_not_widen_the_whole_seed_interval(tmp_path: Path, capsys) -> None:
    """Each seed's optimum is shifted by the same amount in every row (its slope is exactly 0): whole
    seeds keep every resample's slope at 0; drawing cells' seeds independently invents row-to-row noise."""
    shifts = (-1.5, -0.9, -0.3, 0.3, 0.9, 1.5)
    noise = _noise(0)

    def shifted(i: int, j: int, s: int) -> float:
        d = LOG2_DECAYS[j]
        return 0.01 * (d + 9 + shifts[s]) ** 2 - 0.01 * (d + 9) ** 2 + noise[i, j, s]

    write_sweep(tmp_path / "sgdw", "sgdw", vertical, seeds=SEEDS, spread=shifted)
    (row,), _, _ = report([tmp_path / "sgdw"], tmp_path / "out", capsys)
    whole = float(row["slope_hi"]) - float(row["slope_lo"])
    per_cell = float(row["per_cell_hi"]) - float(row["per_cell_lo"])
    assert whole < 0.05 and per_cell > 10 * whole
    assert row["verdict"] == "decoupled"


def test_one_seed_per_cell_with_two_in_the_decay_zero_column_gives_no_interval(tmp_path: Path, capsys) -> None:
    """The decay-0 column does not enter the slope, so its second seed must not lend the panel an
    interval: with one seed in every cell that counts, every interval is undefined (the old code
    bootstrapped single values into a falsely exact [x, x])."""
    write_sweep(tmp_path / "one", "sgd", diagonal, seeds=1, log2_decays=(None, *LOG2_DECAYS))
    write_sweep(tmp_path / "zero", "sgd", diagonal, seeds=1, log2_decays=(None,), seed_ids=(1,))
    rows = [line for name in ("one", "zero") for line in (tmp_path / name / "results.csv").read_text().splitlines()]
    (tmp_path / "both").mkdir()
    (tmp_path / "both" / "results.csv").write_text("\n".join([rows[0], *[r for r in rows[1:] if r != rows[0]]]) + "\n")
    (row,), _, _ = report([tmp_path / "both"], tmp_path / "out", capsys)
    assert int(row["seeds"]) == 1
    for key in ("slope_lo", "slope_hi", "per_seed_t_lo", "per_cell_lo", "per_cell_hi"):
        assert math.isnan(float(row[key])), key
    assert row["verdict"] == "undecided: 1 seed, fewer than 3"


def test_unhealthy_rows_leave_the_slope(tmp_path: Path, capsys) -> None:
    """lr 2^-3: its decay-0 run did not train (loss 1.0 against 0.3); lr 2^-4: its decay-0 seeds span
    20 points. Both put their optimum far off (2^-6 and 2^-11): left in, they would tilt the slope."""

    def error(a: float, d: float | None) -> float:
        if d is None:
            return 0.30
        target = {-3: -6.5, -4: -11.0}.get(a, -9.0)
        return 0.20 + 0.01 * (d - target) ** 2

    def spread(i: int, j: int, s: int) -> float:
        unstable = LOG2_LRS[i] == -4 and j == 0  # the decay-0 column is column 0
        return (0.1 if unstable else 0.0005) * (-1, 0, 1)[s]

    def loss(a: float, d: float | None, s: int) -> float:
        return 1.0 if (a == -3 and d is None) else 0.3

    write_sweep(tmp_path / "sgdw", "sgdw", error, spread=spread, train_loss=loss, log2_decays=(None, *LOG2_DECAYS))
    (row,), optima, printed = report([tmp_path / "sgdw"], tmp_path / "out", capsys)
    assert row["rows_used"] == "-7;-6;-5" and row["rows_censored"] == "-4:unhealthy;-3:unhealthy"
    assert row["health_rule"] == "applied"
    assert float(row["slope"]) == pytest.approx(0.0, abs=1e-6)
    assert row["verdict"] == "decoupled"
    assert [line["healthy"] for line in optima] == ["1", "1", "1", "0", "0"]
    assert "rows left out: 2^-4 (unhealthy), 2^-3 (unhealthy)" in printed
    # the same table judged with a looser health rule takes both rows in, and they tilt the slope
    (loose,), _, _ = report([tmp_path / "sgdw"], tmp_path / "loose", capsys, "--health_loss_ratio", "5",
                            "--health_seed_spread", "30")
    assert loose["rows_used"] == "-7;-6;-5;-4;-3" and abs(float(loose["slope"])) > 0.25


def test_an_optimum_next_to_a_collapsed_cell_or_at_the_edge_is_censored(tmp_path: Path, capsys) -> None:
    """lr 2^-3 collapses from decay 2^-8 up (70 % error): its best cell 2^-9 has a wall beside it.
    lr 2^-7 is best at the largest decay (the grid's edge). Neither enters the slope."""

    def error(a: float, d: float | None) -> float:
        if a == -3 and d >= -8:
            return 0.70
        target = -5.0 if a == -7 else -9.0
        return 0.20 + 0.01 * (d - target) ** 2

    write_sweep(tmp_path / "adamw", "adamw", error, spread=0.0005)
    (row,), optima, _ = report([tmp_path / "adamw"], tmp_path / "out", capsys)
    assert row["rows_used"] == "-6;-5;-4"
    assert row["rows_censored"] == "-7:optimum at the grid edge;-3:optimum next to a collapsed cell"
    assert [line["used"] for line in optima] == ["0", "1", "1", "1", "0"]
    assert row["verdict"] == "decoupled"
    # a collapse threshold above the wall's height keeps lr 2^-3 in
    (kept,), _, _ = report([tmp_path / "adamw"], tmp_path / "kept", capsys, "--collapse", "60")
    assert kept["rows_used"] == "-6;-5;-4;-3"


def test_fewer_than_three_usable_rows_or_seeds_is_undecided(tmp_path: Path, capsys) -> None:
    write_sweep(tmp_path / "two_rows", "sgdw", vertical, log2_lrs=(-6, -5))
    write_sweep(tmp_path / "two_seeds", "sgdw", vertical, seeds=2, spread=0.0005)
    (rows_row,), _, _ = report([tmp_path / "two_rows"], tmp_path / "a", capsys)
    (seeds_row,), _, _ = report([tmp_path / "two_seeds"], tmp_path / "b", capsys)
    assert rows_row["verdict"] == "undecided: 2 usable lr rows, fewer than 3"
    assert seeds_row["verdict"] == "undecided: 2 seeds, fewer than 3"
    (relaxed,), _, _ = report([tmp_path / "two_seeds"], tmp_path / "c", capsys, "--min_seeds", "2")
    assert relaxed["verdict"] == "decoupled"


def test_the_paired_difference_of_a_family_is_computed_seed_by_seed(tmp_path: Path, capsys) -> None:
    noise = _noise(2, size=0.003)
    for name, error in (("sgd", diagonal), ("sgdw", vertical), ("lion", diagonal), ("lionw", vertical)):
        write_sweep(tmp_path / name, name, error, seeds=SEEDS, spread=lambda i, j, s: noise[i, j, s])
    paths = [tmp_path / n for n in ("sgd", "sgdw", "lion", "lionw")]
    _, _, printed = report(paths, tmp_path / "out", capsys, "--pair", "lionw=lion")
    pairs = {row["decoupled"]: row for row in _pairs(tmp_path / "out")}
    assert set(pairs) == {"sgdw", "lionw"}
    sgdw = pairs["sgdw"]
    assert sgdw["coupled"] == "sgd" and int(sgdw["seeds"]) == SEEDS
    assert float(sgdw["difference"]) == pytest.approx(1.0, abs=0.1)
    assert float(sgdw["whole_seed_lo"]) > 0.5 and float(sgdw["per_seed_t_lo"]) > 0.5
    assert sgdw["verdict"] == "differs"
    assert "sgdw - sgd: slope difference +" in printed
    # seeds only one panel ran do not enter: a decoupled panel with other seeds has no pair interval
    write_sweep(tmp_path / "sgdw_other", "sgdw", vertical, seeds=3, spread=0.0005, seed_ids=(10, 11, 12))
    report([tmp_path / "sgd", tmp_path / "sgdw_other"], tmp_path / "other", capsys)
    (other,) = _pairs(tmp_path / "other")
    assert int(other["seeds"]) == 0 and other["verdict"] == "undecided: 0 shared seeds, fewer than 3"


def test_the_same_seeds_draw_the_same_noise_in_both_panels_of_a_pair(tmp_path: Path, capsys) -> None:
    """Both panels share a seed-level tilt (the same seed, the same initialization): the difference of
    their slopes is exactly 1 in every seed, so the paired interval is tight although each panel's is not.
    (Tilts small enough that no resample puts an optimum at the grid's edge, where the parabola stops.)"""
    tilts = (-0.2, -0.12, -0.04, 0.04, 0.12, 0.2)

    def tilted(i: int, j: int, s: int) -> float:
        a, d = LOG2_LRS[i], LOG2_DECAYS[j]
        return 0.01 * (d + 9 - tilts[s] * (a + 5)) ** 2 - 0.01 * (d + 9) ** 2

    def tilted_diagonal(i: int, j: int, s: int) -> float:
        a, d = LOG2_LRS[i], LOG2_DECAYS[j]
        return 0.01 * (a + d + 14 - tilts[s] * (a + 5)) ** 2 - 0.01 * (a + d + 14) ** 2

    write_sweep(tmp_path / "sgdw", "sgdw", vertical, seeds=SEEDS, spread=tilted)
    write_sweep(tmp_path / "sgd", "sgd", diagonal, seeds=SEEDS, spread=tilted_diagonal)
    rows, _, _ = report([tmp_path / "sgd", tmp_path / "sgdw"], tmp_path / "out", capsys)
    assert all(float(r["slope_hi"]) - float(r["slope_lo"]) > 0.15 for r in rows)
    (pair,) = _pairs(tmp_path / "out")
    assert float(pair["whole_seed_hi"]) - float(pair["whole_seed_lo"]) < 0.01
    assert float(pair["per_seed_t_hi"]) - float(pair["per_seed_t_lo"]) < 0.01
    assert pair["verdict"] == "differs"


def test_a_training_loss_panel_has_no_verdicts(tmp_path: Path, capsys) -> None:
    write_sweep(tmp_path / "sgd", "sgd", diagonal, spread=0.0005, train_loss=lambda a, d, s: diagonal(a, d))
    (row,), _, printed = report([tmp_path / "sgd"], tmp_path / "out", capsys, "--metric", "final_train_loss")
    assert float(row["slope"]) == pytest.approx(-1.0, abs=1e-3)
    assert row["verdict"] == row["verdict_per_cell"] == row["outcome"] == row["fragile"] == ""
    assert "verdict" not in printed and "coupled" not in printed
    assert _pairs(tmp_path / "out") == []


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--margin", "0"], "margin must be a positive number"),
        (["--collapse", "-1"], "collapse must be a positive number"),
        (["--min_seeds", "1"], "min_seeds must be at least 2"),
        (["--pair", "lionw"], "--pair 'lionw': write it as DECOUPLED=L2"),
    ],
)
def test_bad_rule_options_are_one_line_errors(tmp_path: Path, capsys, option: list[str], message: str) -> None:
    write_sweep(tmp_path / "sgd", "sgd", diagonal, seeds=1)
    assert main(["report", str(tmp_path / "sgd"), "--out", str(tmp_path / "out"), *option]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing written


def test_the_resample_reading_decides_what_a_seed_does_with_a_row_it_censors(tmp_path: Path, capsys) -> None:
    """Decoupled (best decay 2^-9 in every row), six seeds; seeds 4 and 5 alone want 2^-4 in row 2^-3, beyond
    the grid's last decay 2^-6. On the seed means that row's vertex is inside the grid, so it is used.

    One seed at a time: ``argmin`` keeps row 2^-3 of seeds 4 and 5 at the edge, 2^-6, which gives them a slope
    of 0.6 (the rows' optima -9, -9, -9, -9, -6 over log2 lr -7..-3): per-seed slopes 0, 0, 0, 0, 0.6, 0.6, a t
    interval 0.2 +- 0.325 that reaches +0.5. ``drop`` and ``reselect`` leave that row out of seeds 4 and 5:
    every seed's slope is exactly 0.
    """

    def error(i: int, j: int, s: int) -> float:
        a, d = LOG2_LRS[i], LOG2_DECAYS[j - 1]
        target = -4.0 if (a == -3 and s >= 4) else -9.0
        return 0.30 if j == 0 else 0.20 + 0.01 * (d - target) ** 2 + 0.002 * (a + 5) ** 2

    write_sweep(tmp_path / "adamw", "adamw", lambda a, d: 0.0, seeds=SEEDS, spread=error,
                log2_decays=(None, *LOG2_DECAYS))
    (argmin,), _, printed = report([tmp_path / "adamw"], tmp_path / "argmin", capsys)
    assert argmin["rows_used"] == "-7;-6;-5;-4;-3" and argmin["resample_reading"] == "argmin"
    half = 2.5706 * math.sqrt(0.48 / 5) / math.sqrt(6)
    assert float(argmin["per_seed_t_lo"]) == pytest.approx(0.2 - half, abs=1e-3)
    assert float(argmin["per_seed_t_hi"]) == pytest.approx(0.2 + half, abs=1e-3)
    assert argmin["verdict_per_seed_t"] == "undecided: interval straddles +0.5"
    assert "resamples read by" not in printed
    for reading in ("drop", "reselect"):
        (row,), _, printed = report([tmp_path / "adamw"], tmp_path / reading, capsys, "--resample_reading", reading)
        assert row["rows_used"] == argmin["rows_used"] and row["slope"] == argmin["slope"]
        assert float(row["per_seed_t_lo"]) == pytest.approx(0.0, abs=1e-9)
        assert float(row["per_seed_t_hi"]) == pytest.approx(0.0, abs=1e-9)
        assert row["verdict_per_seed_t"] == "decoupled" and row["resample_reading"] == reading
        assert f"resamples read by '{reading}'" in printed
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path / "adamw"), "--out", str(tmp_path / "bad"), "--resample_reading", "median"])
    assert not (tmp_path / "bad").exists()

"""docs/replication/summarize.py (Figs. 1/3, 4 and Appendix B.1 of the replication suite) on synthetic sweep
results with a known answer, written in the sweep's results.csv format."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from paths import REPO

_spec = importlib.util.spec_from_file_location("summarize", REPO / "docs/replication/summarize.py")
summarize = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summarize)

COLUMNS = ["seed", "optimizer", "state", "final_test_err", "best_test_err", "final_train_loss", "epochs", "wall_s",
           "run_dir", "error"]


def _write(out: Path, part: str, keys: list[str], rows: list[tuple]) -> None:
    (out / part).mkdir(parents=True, exist_ok=True)
    with (out / part / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*keys, *COLUMNS])
        for *grid, seed, err in rows:
            writer.writerow([*grid, seed, part, "complete", err, err, 0.3, 50, 90.0,
                             f"runs/replication/{part}/cell_{len(grid)}_{seed}", ""])


def _b1(out: Path, shift_octaves: float, noise: float = 0.0) -> None:
    """Test error a parabola in log2 lambda with its vertex at -8 for T = 25 and -8 + shift for T = 100."""
    rng = np.random.default_rng(1)
    rows = []
    for t, vertex in ((25, -8.0), (100, -8.0 + shift_octaves)):
        for e in range(-13, -4):
            for seed in range(3):
                rows.append((t, 2.0 ** -9, 2.0 ** e, seed, 0.15 + 0.01 * (e - vertex) ** 2 + rng.normal(0, noise)))
    _write(out, "b1_adamw", [summarize.EPOCHS, summarize.LR, summarize.WD], rows)


def _summary(out: Path) -> dict[str, dict[str, str]]:
    assert summarize.main(["--runs", str(out / "no_runs"), "--out", str(out)]) == 0
    with (out / "suite_summary.csv").open() as handle:
        return {row["measure"]: row for row in csv.DictReader(handle)}


@pytest.mark.parametrize(("shift", "raw_slope", "raw_verdict", "norm_verdict"), [
    (-1.0, -0.5, "raw optimum moves", "normalized optimum stays put"),     # normalized decay: lambda* ~ T^-1/2
    (-2.0, -1.0, "raw optimum moves", "normalized optimum moves"),         # a fixed timescale in epochs: ~ T^-1
    (0.0, 0.0, "raw optimum does not move", "normalized optimum moves"),  # a fixed raw lambda
])
def test_b1_slope_over_run_lengths(tmp_path: Path, shift: float, raw_slope: float, raw_verdict: str,
                                   norm_verdict: str) -> None:
    _b1(tmp_path, shift)  # every seed alike: the interval is the point
    rows = _summary(tmp_path)
    raw, norm = rows["d log2 lambda* / d log2 T (raw)"], rows["d log2 lambda_norm* / d log2 T"]
    assert float(raw["value"]) == pytest.approx(raw_slope, abs=0.05)
    assert float(norm["value"]) == pytest.approx(raw_slope + 0.5, abs=0.05)
    assert float(raw["lo"]) - 1e-9 <= float(raw["value"]) <= float(raw["hi"]) + 1e-9
    assert (raw["verdict"], norm["verdict"]) == (raw_verdict, norm_verdict)


def test_b1_leaves_out_a_run_length_where_decay_does_not_act_and_reads_the_t50_part(tmp_path: Path) -> None:
    keys = [summarize.EPOCHS, summarize.LR, summarize.WD]
    # T = 25 underfits: the error falls by only 0.6 points from the smallest decay to the best (-7), then the decay
    # overpowers the net; T = 50 (its own part) and T = 100 have real optima, half an octave apart per doubling
    underfit = [(25, 2.0 ** -9, 2.0 ** e, seed, 0.30 - 0.001 * (e + 13) if e <= -7 else 0.6)
                for e in range(-13, -4) for seed in range(3)]
    parabola = [(t, 2.0 ** -9, 2.0 ** e, seed, 0.15 + 0.01 * (e - vertex) ** 2)
                for t, vertex in ((50, -8.5), (100, -9.0)) for e in range(-13, -4) for seed in range(3)]
    _write(tmp_path, "b1_adamw", keys, underfit + [r for r in parabola if r[0] == 100])
    _write(tmp_path, "b1_adamw_t50", keys, [r for r in parabola if r[0] == 50])
    rows = _summary(tmp_path)
    raw, norm = rows["d log2 lambda* / d log2 T (raw)"], rows["d log2 lambda_norm* / d log2 T"]
    assert float(raw["value"]) == pytest.approx(-0.5, abs=0.05) and raw["seeds"] == "3 seeds; T = 50, 100"
    assert (raw["verdict"], norm["verdict"]) == ("raw optimum moves", "normalized optimum stays put")


def test_lost_snapshot_errors_are_named_and_fail_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    keys = [summarize.LR, summarize.WD]
    _write(tmp_path, "fig4_adamwr", keys, [(1e-3, 1e-3, s, 0.1) for s in range(3)])  # no anytime.csv, no runs
    _write(tmp_path, "fig4_adamw_cosine", [summarize.EPOCHS, *keys], [(10, 1e-3, 1e-3, s, 0.3) for s in range(3)])
    assert summarize.main(["--runs", str(tmp_path / "no_runs"), "--out", str(tmp_path)]) == 1
    assert "fig4_adamwr: missing snapshot errors" in capsys.readouterr().out


def test_error_at_matched_training_loss_interpolates_in_log_loss() -> None:
    # the running minimum reaches 0.5 between epochs 2 (loss 1.0, err 0.4) and 4 (loss 0.125, err 0.2), a third of
    # the way in log loss; epoch 3 (loss 1.5) set no minimum
    assert summarize.error_at_loss([2.0, 1.0, 1.5, 0.125], [0.6, 0.4, 0.5, 0.2], 0.5) == pytest.approx(0.4 - 0.2 / 3)
    assert math.isnan(summarize.error_at_loss([2.0, 1.0], [0.6, 0.4], 0.5))


def test_fig1_fig3_and_fig4_verdicts_from_results_and_curves(tmp_path: Path) -> None:
    keys = [summarize.LR, summarize.WD]
    _write(tmp_path, "fig13_adam", keys, [(1e-3, 1e-3, s, 0.20 + 0.002 * s) for s in range(8)])
    _write(tmp_path, "fig13_adamw", keys, [(1e-3, 1e-3, s, 0.16 + 0.002 * s) for s in range(8)])
    # AdamW trains further (0.125); the level both reach is Adam's 0.25, where AdamW is halfway (in log loss)
    # between its losses 0.5 and 0.125: test error 0.225 against Adam's 0.25
    for part, offset, last in (("fig13_adam", 0.05, 0.25), ("fig13_adamw", 0.0, 0.125)):
        with (tmp_path / part / "curves.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["seed", "epoch", "train_loss", "test_err"])
            for s in range(8):
                for k, loss in enumerate([1.0, 0.5, last]):
                    writer.writerow([s, 5 * (k + 1), loss, 0.3 - 0.05 * k + offset])
    _write(tmp_path, "fig4_adamwr", keys, [(1e-3, 1e-3, s, 0.1) for s in range(3)])
    with (tmp_path / "fig4_adamwr" / "anytime.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["seed", "epoch", "anytime_err"])
        for s in range(3):
            for epoch, err in ((10, 0.40), (30, 0.20 + 0.01 * s), (70, 0.15)):
                writer.writerow([s, epoch, err])
    _write(tmp_path, "fig4_adamw_cosine", [summarize.EPOCHS, *keys],
           [(e, 1e-3, 1e-3, s, err + 0.01 * s) for s in range(3) for e, err in ((10, 0.30), (30, 0.20), (70, 0.18))])
    rows = _summary(tmp_path)
    fig1 = rows["test error Adam - AdamW"]
    assert float(fig1["value"]) == pytest.approx(0.04) and fig1["verdict"] == "AdamW better"
    fig3 = next(r for m, r in rows.items() if m.startswith("test error at training loss 0.2500"))
    assert float(fig3["value"]) == pytest.approx(0.025) and fig3["verdict"] == "AdamW better"
    by_epoch = {m.split(" at epoch ")[1].split()[0]: r for m, r in rows.items() if m.startswith("adamwr snapshot")}
    assert by_epoch["10"]["verdict"] == "restarts cost" and float(by_epoch["10"]["value"]) == pytest.approx(0.09)
    assert by_epoch["30"]["verdict"] == "no cost shown"
    assert by_epoch["70"]["verdict"] == "no cost shown" and float(by_epoch["70"]["value"]) < 0


def test_b1_seed_noise_larger_than_the_effect_gives_no_verdict(tmp_path: Path) -> None:
    _b1(tmp_path, -1.0, noise=0.04)  # seed noise 4x the parabola's rise one octave from the optimum
    rows = _summary(tmp_path)
    norm = rows["d log2 lambda_norm* / d log2 T"]
    assert float(norm["hi"]) - float(norm["lo"]) > 1.0
    assert norm["verdict"] == "interval too wide to tell"

"""docs/replication/fashion_mnist/pilot.py's stage-1 rule (PREREGISTRATION.md section 3 and its deviations) on
synthetic pilot parts whose answer is known: criteria (a) and (b) computed from results.csv as the text defines
them (pooled within-cell seed SD, gain of the best decay over decay 0), the cell time of the timing run, the
affordable bound (84 s) and the rule where the pilot ends when no candidate passes (b)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from paths import REPO

from wdlab.experiments.results import write_results

_spec = importlib.util.spec_from_file_location("pilot", REPO / "docs/replication/fashion_mnist/pilot.py")
pilot = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = pilot
_spec.loader.exec_module(pilot)

DECAY = "model.optimizer.weight_decay"
DECAYS = (0.0, 2.0**-10, 2.0**-8, 2.0**-6)


def _stage1(root: Path, candidate: str, errors: dict[str, dict[float, tuple[float, float]]], loss: float) -> None:
    """pilot_<candidate>_<optimizer>: validation errors (percent) of seeds 900 and 901 per decay."""
    for optimizer, cells in errors.items():
        rows = [((decay, seed), {"optimizer": optimizer, "state": "complete", "final_val_err": err / 100,
                                 "final_test_err": err / 100, "final_train_loss": loss, "wall_s": 80.0})
                for decay, pair in cells.items() for seed, err in zip((900, 901), pair, strict=True)]
        (root / f"pilot_{candidate}_{optimizer}").mkdir(parents=True)
        write_results(root / f"pilot_{candidate}_{optimizer}" / "results.csv", [DECAY], rows)


def _timing(root: Path, candidate: str, walls: tuple[float, ...]) -> None:
    """timing_<candidate>_<optimizer>: one slot per optimizer, its cells' wall times in seed order."""
    for optimizer in pilot.OPTIMIZERS:
        rows = [((2.0**-8, 900 + i), {"optimizer": optimizer, "state": "complete", "wall_s": wall})
                for i, wall in enumerate(walls)]
        (root / f"timing_{candidate}_{optimizer}").mkdir(parents=True)
        write_results(root / f"timing_{candidate}_{optimizer}" / "results.csv", [DECAY], rows)


def _flat(gain: float | tuple[float, float], noise: float) -> dict[str, dict[float, tuple[float, float]]]:
    """Decay 0 at 20 % + gain (one for both optimizers, or SGDW's and AdamW's), the best decay (2^-8) at 20 %,
    the others at 21 %; the two seeds of every cell ``noise`` points apart (so the pooled SD is noise / sqrt(2))."""
    gains = gain if isinstance(gain, tuple) else (gain, gain)
    cells = {}
    for optimizer, g in zip(pilot.OPTIMIZERS, gains, strict=True):
        means = {0.0: 20 + g, 2.0**-10: 21.0, 2.0**-8: 20.0, 2.0**-6: 21.0}
        cells[optimizer] = {d: (m - noise / 2, m + noise / 2) for d, m in means.items()}
    return cells


Gain = float | tuple[float, float]


def _candidates(root: Path, stage1: dict[str, tuple[Gain, float, float]], seconds: dict[str, float]) -> None:
    """Every candidate's timing (two cells per slot: the second is the cell time) and, for those in ``stage1``,
    its cells: (gain, seed noise, training loss)."""
    for candidate in pilot.CANDIDATES:
        _timing(root, candidate, (seconds.get(candidate, 200.0) + 10.0, seconds.get(candidate, 200.0)))
    for candidate, (gain, noise, loss) in stage1.items():
        _stage1(root, candidate, _flat(gain, noise), loss)


def test_judge_computes_the_pooled_seed_sd_and_the_gain_as_registered(tmp_path: Path) -> None:
    errors = {"sgdw": {0.0: (23.0, 25.0), 2.0**-10: (22.0, 22.5), 2.0**-8: (20.0, 21.0), 2.0**-6: (30.0, 32.0)},
              "adamw": {0.0: (24.0, 24.0), 2.0**-10: (21.0, 22.0), 2.0**-8: (22.0, 23.0), 2.0**-6: (40.0, 40.0)}}
    _stage1(tmp_path, "D", errors, loss=0.1)
    result = pilot.judge(tmp_path, "D")
    pairs = [pair for cells in errors.values() for pair in cells.values()]
    pooled = math.sqrt(np.mean([np.var(pair, ddof=1) for pair in pairs]))
    assert result["pooled_sd"] == pytest.approx(pooled)
    sgdw, adamw = result["optimizers"]["sgdw"], result["optimizers"]["adamw"]
    assert sgdw["best_decay"] == 2.0**-8 and sgdw["gain"] == pytest.approx(24.0 - 20.5)
    assert adamw["best_decay"] == 2.0**-10 and adamw["gain"] == pytest.approx(24.0 - 21.5)
    # (b): pooled = sqrt(5.625 / 8) = 0.839, so 3 SD = 2.52: 3.5 passes, 2.5 does not
    assert sgdw["b"] and not adamw["b"]


def test_the_rule_picks_the_lowest_loss_among_affordable_candidates_that_pass_b(tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture) -> None:
    # G, H and I pass (b) (gain 3 points, pooled SD 0.35); I has the lowest loss but costs 90 s: not affordable;
    # H's is lower than G's. D, E, F fail (b). A, B, C cost 200 s and have no stage-1 cells of their own but A's.
    _candidates(tmp_path, {"A": (0.4, 1.0, 0.3), "D": (0.5, 1.0, 0.3), "E": (2.0, 2.0, 0.1), "F": (2.0, 3.0, 0.07),
                           "G": (3.0, 0.5, 0.08), "H": (3.0, 0.5, 0.06), "I": (3.0, 0.5, 0.02)},
                {"D": 79.0, "E": 82.0, "F": 79.0, "G": 80.0, "H": 80.0, "I": 90.0})
    assert pilot.main(["--dir", str(tmp_path)]) == 0
    rule = capsys.readouterr().out.splitlines()[-1]
    assert rule.startswith("rule: candidate H (affordable and passing b: G, H;"), rule
    assert "NOT met" not in rule


def test_when_none_passes_b_the_largest_smaller_gain_to_sd_ratio_is_chosen_and_said(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # ratios gain / (noise / sqrt 2): D 0.5/0.707 = 0.71, E 2/1.414 = 1.41, F 2/2.12 = 0.94, G 2.5/1.41 = 1.77,
    # H min(1.2, 3.0)/0.707 = 1.70 (its AdamW alone: 4.24), I 0.9/0.354 = 2.55 but not affordable (85 s)
    _candidates(tmp_path, {"A": (0.4, 1.0, 0.3), "D": (0.5, 1.0, 0.3), "E": (2.0, 2.0, 0.1), "F": (2.0, 3.0, 0.07),
                           "G": (2.5, 2.0, 0.2), "H": ((1.2, 3.0), 1.0, 0.05), "I": (0.9, 0.5, 0.02)},
                {"D": 79.0, "E": 82.0, "F": 79.0, "G": 80.0, "H": 80.0, "I": 85.0})
    assert pilot.main(["--dir", str(tmp_path)]) == 0
    rule = capsys.readouterr().out.splitlines()[-1]
    assert rule.startswith("rule: candidate G (no affordable candidate passes b"), rule
    assert "G 1.77" in rule and "(b) NOT met" in rule and "criterion (a) fails" in rule


def test_an_affordable_candidate_without_its_stage1_cells_stops_the_rule(tmp_path: Path) -> None:
    _candidates(tmp_path, {"A": (0.4, 1.0, 0.3), "D": (0.5, 1.0, 0.3), "E": (2.0, 2.0, 0.1), "F": (2.0, 3.0, 0.07),
                           "G": (3.0, 2.0, 0.05), "H": (3.0, 0.5, 0.06)},
                {"D": 79.0, "E": 82.0, "F": 79.0, "G": 80.0, "H": 80.0, "I": 80.0})
    assert pilot.main(["--dir", str(tmp_path)]) == 1

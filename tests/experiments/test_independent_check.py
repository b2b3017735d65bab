"""docs/replication/fashion_mnist/independent_check.py, the recomputation of round 2's Fig. 2 statistics written
from PREREGISTRATION.md §5 without wdlab's code: its registered ("argmin") reading against
``wdlab.experiments.coupling`` on the shipped panels (each of the three readings of a resample, panels and
pairs), and the "drop" and "argmin" readings on a synthetic panel
whose answer is computed here by hand."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import numpy as np
import pytest
from paths import REPO
from scipy import stats

from wdlab.experiments.coupling import PanelSeeds, coupling, paired_difference
from wdlab.experiments.rules import DEFAULT_RULES, Rules

DOCS = REPO / "docs/replication/fashion_mnist"
_spec = importlib.util.spec_from_file_location("independent_check", DOCS / "independent_check.py")
check = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = check  # its dataclasses look their module up there
_spec.loader.exec_module(check)

RESAMPLES = 200
# The relaxed rules of the README's robustness table (`wdlab report --health_loss_ratio 1000
# --health_seed_spread 100 --collapse 100 --min_rows 2`), in wdlab's units (fractions).
RULE_SETS = {"registered": (check.REGISTERED, DEFAULT_RULES),
             "relaxed": (check.RELAXED, Rules(health_loss_ratio=1000.0, health_seed_spread=1.0, collapse=1.0,
                                              min_rows=2))}


@pytest.fixture(scope="module", params=["sgd", "sgdw", "adam", "adamw"])
def panel(request):
    path = DOCS / f"fig2_{request.param}" / "results.csv"
    if not path.is_file():
        pytest.skip(f"{path} not shipped")
    return check.load_panel(path, request.param, "final_test_err")


def _wdlab_rules(rules: str, reading: str) -> Rules:
    return dataclasses.replace(RULE_SETS[rules][1], resample_reading=reading)


def _wdlab_coupling(panel, rules: Rules):
    return coupling(panel.lrs, panel.decays, np.nanmean(panel.err, axis=2), seed_values=panel.err,
                    resamples=RESAMPLES, rng_seed=0, train_loss=np.nanmean(panel.loss, axis=2),
                    seed_train_loss=panel.loss, rules=rules)


@pytest.mark.parametrize("reading", check.READINGS)
@pytest.mark.parametrize("rules", sorted(RULE_SETS))
def test_each_reading_is_wdlabs(panel, rules, reading):
    """Same rows, slope and per-seed t interval as wdlab (deterministic), and the same whole-seed resamples,
    under each reading of a resample (``wdlab report --resample_reading``)."""
    ours_rules = RULE_SETS[rules][0]
    ref = _wdlab_coupling(panel, _wdlab_rules(rules, reading))
    sel = check.select(panel, ours_rules)
    draws = check.panel_draws(panel, ours_rules, reading, sel, RESAMPLES, None)

    assert [s.lr for s in ref.statuses if s.used] == list(panel.lrs[sel.used])
    assert sel.slope == pytest.approx(ref.slope, abs=1e-9)
    lo, hi, n = check.t_interval(draws.per_seed)
    assert (lo, hi) == pytest.approx((ref.intervals["per_seed_t"].lo, ref.intervals["per_seed_t"].hi), abs=1e-9)
    assert n == ref.intervals["per_seed_t"].n
    lo, hi, _ = check.percentile_interval(draws.whole_seed)
    assert (lo, hi) == pytest.approx((ref.intervals["whole_seed"].lo, ref.intervals["whole_seed"].hi), abs=1e-9)


@pytest.mark.parametrize("pair", [("sgdw", "sgd"), ("adamw", "adam")])
@pytest.mark.parametrize("reading", check.READINGS)
@pytest.mark.parametrize("rules", sorted(RULE_SETS))
def test_each_reading_pairs_as_wdlab(rules, reading, pair):
    """SGDW − SGD and AdamW − Adam under each reading: the same difference, whole-seed and per-seed t intervals
    as wdlab's paired_difference."""
    decoupled, l2 = pair
    panels = {}
    for key in pair:
        path = DOCS / f"fig2_{key}" / "results.csv"
        if not path.is_file():
            pytest.skip(f"{path} not shipped")
        panels[key] = check.load_panel(path, key, "final_test_err")
    ours = check.pair_result(panels[decoupled], panels[l2], RULE_SETS[rules][0], reading, RESAMPLES)
    wdlab_rules = _wdlab_rules(rules, reading)
    sides = []
    for key in pair:
        panel = panels[key]
        stats = _wdlab_coupling(panel, wdlab_rules)
        sides.append(PanelSeeds(key, panel.lrs, panel.decays, panel.err, panel.seeds,
                                np.array([s.used for s in stats.statuses]),
                                np.array([bool(s.healthy) for s in stats.statuses]), panel.loss))
    ref = paired_difference(*sides, wdlab_rules, RESAMPLES, 0)
    assert ours["slope"] == pytest.approx(ref.difference, abs=1e-9)
    for kind, (lo, hi) in {"whole_seed": ("ws_lo", "ws_hi"), "per_seed_t": ("t_lo", "t_hi")}.items():
        assert (ours[lo], ours[hi]) == pytest.approx((ref.intervals[kind].lo, ref.intervals[kind].hi), abs=1e-9)


def _synthetic_panel():
    """Three rows (log2 lr −2, −1, 0), decays 0 and 2^-10 .. 2^-6, three seeds; error 0.2 + 0.01 (log2 λ − c)²,
    a parabola the vertex recovers exactly. Row optima c = −7.8, −8.2, −8.6 in every seed but seed 2 of row −2,
    whose parabola sits at the grid's edge (c = −6). On the seed means row −2's parabola has c = −7.2 (inside)."""
    lrs = 2.0 ** np.array([-2, -1, 0])
    decays = np.array([0.0, *(2.0 ** np.arange(-10, -5))])
    centres = np.array([[-7.8, -7.8, -6.0], [-8.2, -8.2, -8.2], [-8.6, -8.6, -8.6]])  # (rows, seeds)
    x = np.log2(decays[1:])
    err = np.empty((3, len(decays), 3))
    err[:, 0, :] = 0.30  # decay 0: the same in every seed, so every row is healthy
    err[:, 1:, :] = 0.2 + 0.01 * (x[None, :, None] - centres[:, None, :]) ** 2
    return check.Panel("sgdw", lrs, decays, [0, 1, 2], err, np.full_like(err, 0.05), {})


def test_drop_reading_leaves_a_seeds_censored_row():
    panel = _synthetic_panel()
    sel = check.select(panel, check.REGISTERED)
    assert sel.used.all()
    np.testing.assert_allclose(sel.opt, [-7.2, -8.2, -8.6], atol=1e-12)
    assert sel.slope == pytest.approx(-0.7, abs=1e-12)  # (−8.6 − (−7.2)) / 2

    per_seed = {r: check.panel_draws(panel, check.REGISTERED, r, sel, 50, None).per_seed for r in check.READINGS}
    # argmin: seed 2's row −2 enters at its edge value −6, slope (−8.6 − (−6)) / 2 = −1.3;
    # drop and reselect: that row leaves seed 2's slope, which is then the other rows' −0.4.
    np.testing.assert_allclose(per_seed["argmin"], [-0.4, -0.4, -1.3], atol=1e-12)
    np.testing.assert_allclose(per_seed["drop"], [-0.4, -0.4, -0.4], atol=1e-12)
    np.testing.assert_allclose(per_seed["reselect"], [-0.4, -0.4, -0.4], atol=1e-12)

    lo, hi, n = check.t_interval(per_seed["argmin"])
    half = stats.t.ppf(0.975, 2) * np.std([-0.4, -0.4, -1.3], ddof=1) / np.sqrt(3)
    assert (lo, hi, n) == pytest.approx((-0.7 - half, -0.7 + half, 3), abs=1e-12)
    lo, hi, _ = check.t_interval(per_seed["drop"])
    assert (lo, hi) == pytest.approx((-0.4, -0.4), abs=1e-12)

    # A whole-seed resample of seed 2 three times has row −2 at the edge: argmin −1.3, drop −0.4.
    idx = check.whole_seed_draws(3, 400)
    ws = {r: check.panel_draws(panel, check.REGISTERED, r, sel, 400, None).whole_seed for r in ("argmin", "drop")}
    only_2 = (idx == 2).all(axis=1)
    assert only_2.any()
    np.testing.assert_allclose(ws["argmin"][only_2], -1.3, atol=1e-12)
    np.testing.assert_allclose(ws["drop"][only_2], -0.4, atol=1e-12)
    np.testing.assert_allclose(ws["drop"][~only_2], ws["argmin"][~only_2], atol=1e-12)


def test_bad_input_is_one_line_and_non_zero(tmp_path, capsys):
    assert check.main(["--docs", str(tmp_path / "nowhere")]) == 2
    assert check.main(["--docs", str(tmp_path)]) == 2  # no panel at all
    (tmp_path / "fig2_sgd").mkdir()
    (tmp_path / "fig2_sgd" / "results.csv").write_text(
        "model.optimizer.lr,model.optimizer.weight_decay,seed,state,final_test_err,final_train_loss\n"
        "0.1,0.0,100,complete,22.5,0.1\n")
    assert check.main(["--docs", str(tmp_path)]) == 2  # a percentage, not a fraction
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("independent_check.py: error:") for line in err)
    assert "fractions" in err[-1]


def _threshold_panel(loss_ratio: float, spread_pts: float, worse_pts: float):
    """Four rows, all uncensored parabolas but row −1, whose best cell's right neighbour is ``worse_pts`` points
    worse; row 0's decay-0 training loss is ``loss_ratio`` × the lowest (row −3's) and row −2's decay-0 seeds
    spread over ``spread_pts`` points."""
    lrs = 2.0 ** np.array([-3, -2, -1, 0])
    decays = np.array([0.0, *(2.0 ** np.arange(-10, -5))])
    x = np.log2(decays[1:])
    err = np.empty((4, len(decays), 3))
    err[:, 0, :] = 0.30
    err[1, 0, :] = [0.30, 0.30, 0.30 + spread_pts / 100]
    err[:, 1:, :] = (0.2 + 0.01 * (x[None, :] - np.array([-7.9, -8.1, -8.3, -8.4])[:, None]) ** 2)[..., None]
    err[2, 1:, :] = np.array([0.40, 0.30, 0.20, 0.20 + worse_pts / 100, 0.40])[:, None]
    loss = np.full_like(err, 0.05)
    loss[:, 0, :] = 0.10
    loss[3, 0, :] = 0.10 * loss_ratio
    return check.Panel("sgdw", lrs, decays, [0, 1, 2], err, loss, {})


@pytest.mark.parametrize(("loss_ratio", "spread_pts", "worse_pts", "used"), [
    (1.45, 9.5, 9.9, [True, True, True, True]),
    (1.55, 9.5, 9.9, [True, True, True, False]),
    (1.45, 10.5, 9.9, [True, False, True, True]),
    (1.45, 9.5, 10.1, [True, True, False, True]),
])
def test_registered_rules_at_their_thresholds(loss_ratio, spread_pts, worse_pts, used):
    panel = _threshold_panel(loss_ratio, spread_pts, worse_pts)
    sel = check.select(panel, check.REGISTERED)
    assert list(sel.used) == used
    ref = coupling(panel.lrs, panel.decays, np.nanmean(panel.err, axis=2), seed_values=panel.err, resamples=20,
                   rng_seed=0, train_loss=np.nanmean(panel.loss, axis=2), rules=DEFAULT_RULES)
    assert [s.used for s in ref.statuses] == used

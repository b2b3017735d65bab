"""Round 2's suite end to end on the real Fashion-MNIST files: ``docs/replication/fashion_mnist/run_round2.py
--tiny`` (one seed, the central row and column of every grid, Fig. 2 for Adam and AdamW and Fig. 4 for AdamWR only,
two-epoch cells of 64 images) places every part by the pre-registered rules from a placement file and Fig. 2's
results, runs it, and copies each part's results.csv and study next to the docs; the expected grids are recomputed
here from the rules' text, not from the runner."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from data_files import real_fashion_mnist
from paths import REPO

pytestmark = [pytest.mark.slow, pytest.mark.trains]

RUNNER = REPO / "docs" / "replication" / "fashion_mnist" / "run_round2.py"
LR, WD, WDN, EPOCHS = ("model.optimizer.lr", "model.optimizer.weight_decay", "model.optimizer.weight_decay_norm",
                       "trainer.max_epochs")
PLACEMENT = {"sgd": (2**-3, 2**-9), "sgdw": (2**-3, 2**-8), "adam": (2**-8, 2**-7), "adamw": (2**-8, 2**-6)}
# Two test batches of 256 images, not the 10,000: LightningCLI parses Trainer's ``Optional[Union[int, float]]``
# limits float-first, so "1" would arrive as 1.0, which Lightning reads as 100 % (and "2" as 2.0, read as 2 batches)
TINY_CELL = ["--trainer.max_epochs", "2", "--data.init_args.train_subset", "64", "--data.init_args.val_split", "64",
             "--trainer.limit_test_batches", "2", "--data.init_args.eval_batch_size", "256"]


def _rows(docs: Path, part: str) -> list[dict[str, str]]:
    with (docs / part / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(r["state"] == "complete" for r in rows), (part, rows)
    assert (docs / part / "sweep.db").is_file(), part  # the study a fresh checkout resumes from
    return rows


def _grid(rows: list[dict[str, str]], key: str) -> list[float]:
    return sorted({float(r[key]) for r in rows})


def test_the_tiny_round2_suite_places_runs_and_saves_every_part(tmp_path: Path) -> None:
    root = real_fashion_mnist()
    placement = tmp_path / "placement.csv"
    with placement.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["optimizer", "lr", "weight_decay", "final_val_err"])
        for optimizer, (lr, decay) in PLACEMENT.items():
            writer.writerow([optimizer, repr(lr), repr(decay), "0.2"])
    docs, runs = tmp_path / "docs", tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--tiny", "--jobs", "1", "--placement", str(placement), "--docs", str(docs),
         "--runs", str(runs), "--data.init_args.root", str(root), *TINY_CELL],
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # Fig. 2: the central row alpha* and the columns 0 and lambda* (tiny: k = 0, j = 0), seed 100; tiny: Adam (the L2
    # column rule) and AdamW (the decoupled one) only, the panels the later parts read
    assert not (docs / "fig2_sgd").exists() and not (docs / "fig2_sgdw").exists()
    fig2 = {}
    for optimizer, (lr, decay) in PLACEMENT.items():
        if optimizer not in ("adam", "adamw"):
            continue
        fig2[optimizer] = rows = _rows(docs, f"fig2_{optimizer}")
        assert {r["optimizer"] for r in rows} == {optimizer}
        assert _grid(rows, LR) == [lr] and _grid(rows, WD) == [0.0, decay]
        assert {r["seed"] for r in rows} == {"100"}

    # Figs. 1/3: each at its Fig. 2 cell of lowest validation error (any cell, decay 0 included), seed 200
    for optimizer in ("adam", "adamw"):
        best = min(fig2[optimizer], key=lambda r: (float(r["final_val_err"]), float(r[WD])))
        rows = _rows(docs, f"fig13_{optimizer}")
        assert (_grid(rows, LR), _grid(rows, WD)) == ([float(best[LR])], [float(best[WD])])

    # Fig. 4: T_0 = max(1, round(2 / 7)) = 1, periods end at epochs 1, 3, 7; lambda* = the best decay > 0 of the
    # alpha* row (tiny: the one decay); arm norm: lambda_norm = lambda* sqrt(B * 4 T_0 / b) = lambda* sqrt(64*4/64)
    assert not (docs / "fig4_sgdwr_norm").exists()  # tiny: AdamWR only (SGDWR's parts are the same code)
    for restarts, decoupled in (("adamwr", "adamw"),):
        lr, decay = PLACEMENT[decoupled]
        for arm, name, key, value in (("norm", restarts, WDN, 2 * decay), ("raw", decoupled, WD, decay)):
            rows = _rows(docs, f"fig4_{restarts}_{arm}")
            assert {r["optimizer"] for r in rows} == {name} and _grid(rows, LR) == [lr]
            assert _grid(rows, key) == [pytest.approx(value, rel=1e-12)]
            assert [int(r["epochs"]) for r in rows] == [7]
            run_dir = Path(rows[0]["run_dir"])
            run_dir = run_dir if run_dir.is_absolute() else tmp_path / run_dir
            snapshots = sorted(p.name for p in run_dir.glob("**/snapshots/*.ckpt"))
            assert snapshots == ["period-0-epoch-1.ckpt", "period-1-epoch-3.ckpt", "period-2-epoch-7.ckpt"], arm
            cosine = _rows(docs, f"fig4_{restarts}_{arm}_cosine")
            assert {r["optimizer"] for r in cosine} == {decoupled}
            assert _grid(cosine, EPOCHS) == [3.0, 7.0] and _grid(cosine, key) == [pytest.approx(value, rel=1e-12)]

    # B.1: AdamW at alpha*, T = round(2 / 2) = 1: lengths 1, 2, 4; lambda* 2^(0/2) (tiny: j = 0), seed 400
    rows = _rows(docs, "b1_adamw")
    assert _grid(rows, EPOCHS) == [1.0, 2.0, 4.0] and _grid(rows, WD) == [PLACEMENT["adamw"][1]]
    assert _grid(rows, LR) == [PLACEMENT["adamw"][0]] and not any(math.isnan(float(r["final_val_err"])) for r in rows)

    # the summary of Figs. 1/3, 4 and B.1 reads those parts (and the runs' curves and snapshots): every claim has
    # its line; one seed per part cannot decide anything
    summary = subprocess.run(
        [sys.executable, str(RUNNER.with_name("summarize_round2.py")), "--docs", str(docs), "--runs", str(runs)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert summary.returncode == 0, summary.stdout[-3000:] + summary.stderr[-3000:]
    with (docs / "round2_summary.csv").open(newline="") as handle:
        claims = list(csv.DictReader(handle))
    assert {row["claim"] for row in claims} == {"fig1", "fig3", "fig4", "b1"}, claims
    for row in claims:
        if row["measure"].startswith("SGDWR"):  # its parts were not run: said so, not skipped
            assert row["verdict"] == "missing", row
        elif row["measure"].startswith("T = "):  # B.1's lengths: two-epoch runs are not well trained
            assert "not well trained" in row["verdict"] and "criterion (a)" in row["reason"], row
        else:  # every claim line: one seed cannot decide
            assert row["verdict"] == "undecided" and "fewer than two" in row["reason"], row
    curves = _rows_of(docs / "fig13_adamw" / "curves.csv")
    assert [int(r["epoch"]) for r in curves] == [1, 2] and all(r["test_err"] for r in curves)  # TestCurve's
    assert len(_rows_of(docs / "fig4_adamwr_norm" / "anytime.csv")) == 3  # the three snapshots, on the test set
    # the cost of every part that ran, from the wall times the sweeps recorded
    written = sorted(d.name for d in docs.iterdir() if (d / "results.csv").is_file())
    cost = {r["part"]: r for r in _rows_of(docs / "round2_cost.csv")}
    assert sorted(cost) == sorted([*written, "fig2 (total)", "round 2 (total)"]), cost
    for part in written:
        assert cost[part]["cells"] == cost[part]["planned"] != "0" and float(cost[part]["hours"]) > 0, cost[part]


def _rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))

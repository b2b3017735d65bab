"""Round 1 (synthetic data): figures for Figs. 1/3, 4 and B.1, and their intervals paired by seed.

    python docs/replication/round1_figures.py            # writes docs/replication/round1/

Reads only committed CSVs (no runs, no training). ``summarize.py`` resamples the two sides of a
difference independently; but seed k shares its initialization and data order between the two sides
(Adam and AdamW in Figs. 1/3; the restart run and the cosine runs in Fig. 4, whose first period is the
same computation), so the seed is the unit here, as in round 2's pre-registration (sec. 5): per-seed
differences with a t interval (n - 1 degrees of freedom) and the whole-seed bootstrap of their mean.
With 3 seeds that bootstrap has 10 distinct resamples and its percentile interval is about the range
of the three differences: it is written for completeness, the t interval is the one to read.
B.1's slope d log2 lambda* / d log2 T gets the three intervals of ``wdlab report`` (whole-seed
bootstrap, per-seed t, per-cell bootstrap) over the run lengths summarize.py uses (T = 50, 100, 200).

Writes ``round1/paired.csv`` and ``round1/{fig13,fig4,b1}.png``.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import summarize  # noqa: E402

from wdlab.experiments.intervals import (  # noqa: E402
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    per_cell_bootstrap_slopes,
    per_seed_slopes,
    t_interval,
    whole_seed_bootstrap_slopes,
)
from wdlab.experiments.row_optima import row_optima  # noqa: E402

OUT = HERE / "round1"


def rows(part: str, name: str = "results.csv") -> list[dict[str, str]]:
    with open(HERE / part / name, newline="") as f:
        return list(csv.DictReader(f))


def paired(diffs: np.ndarray) -> dict[str, float]:
    """Mean of per-seed differences, its t interval and its whole-seed bootstrap interval."""
    t = t_interval("per_seed_t", diffs)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = diffs[rng.integers(0, len(diffs), size=(BOOTSTRAP_RESAMPLES, len(diffs)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"value": float(diffs.mean()), "t_lo": t.lo, "t_hi": t.hi, "boot_lo": float(lo), "boot_hi": float(hi)}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    table: list[dict[str, object]] = []

    def record(claim: str, measure: str, seeds: int, stats: dict[str, float], per_seed: str) -> None:
        table.append({"claim": claim, "measure": measure, "seeds": seeds, **stats, "per_seed": per_seed})
        print(f"{claim} | {measure}: {stats['value']:+.2f} t [{stats['t_lo']:+.2f}, {stats['t_hi']:+.2f}] "
              f"boot [{stats['boot_lo']:+.2f}, {stats['boot_hi']:+.2f}] ({seeds} seeds)")

    # Figs. 1/3: Adam - AdamW, paired by seed (points: percentage points)
    final = {n: {int(r["seed"]): 100 * float(r["final_test_err"]) for r in rows(f"fig13_{n}")}
             for n in ("adam", "adamw")}
    seeds = sorted(set(final["adam"]) & set(final["adamw"]))
    d = np.array([final["adam"][s] - final["adamw"][s] for s in seeds])
    record("fig1", "test error Adam - AdamW (points)", len(seeds), paired(d), " ".join(f"{x:+.2f}" for x in d))
    curves: dict[str, dict[int, list[tuple[int, float, float]]]] = {}
    for n in ("adam", "adamw"):
        c: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
        for r in rows(f"fig13_{n}", "curves.csv"):
            c[int(r["seed"])].append((int(r["epoch"]), float(r["train_loss"]), 100 * float(r["test_err"])))
        curves[n] = {s: sorted(v) for s, v in c.items()}
    level = max(min(p[1] for p in pts) for c in curves.values() for pts in c.values())
    at = {n: {s: summarize.error_at_loss([p[1] for p in pts], [p[2] for p in pts], level) for s, pts in c.items()}
          for n, c in curves.items()}
    d = np.array([at["adam"][s] - at["adamw"][s] for s in seeds])
    record("fig3", f"test error at training loss {level:.4f}, Adam - AdamW (points)", len(seeds), paired(d),
           " ".join(f"{x:+.2f}" for x in d))

    # Fig. 4: snapshot at a period end - cosine run of that length, paired by seed
    fig4: dict[str, dict[int, tuple[list[float], list[float]]]] = {}
    for restarts, cosine in (("adamwr", "adamw"), ("sgdwr", "sgdw")):
        cos = {(int(r["seed"]), int(r[summarize.EPOCHS])): 100 * float(r["final_test_err"])
               for r in rows(f"fig4_{cosine}_cosine")}
        snap = {(int(r["seed"]), int(r["epoch"])): 100 * float(r["anytime_err"])
                for r in rows(f"fig4_{restarts}", "anytime.csv")}
        fig4[restarts] = {}
        for epoch in sorted({e for _, e in snap}):
            ss = sorted(s for s, e in snap if e == epoch and (s, epoch) in cos)
            a, b = [snap[(s, epoch)] for s in ss], [cos[(s, epoch)] for s in ss]
            fig4[restarts][epoch] = (a, b)
            if epoch == min(e for _, e in snap):
                continue  # the first period is the cosine run itself (identical computation)
            d = np.array(a) - np.array(b)
            record("fig4", f"{restarts} snapshot - {cosine} cosine at epoch {epoch} (points)", len(ss), paired(d),
                   " ".join(f"{x:+.2f}" for x in d))

    # B.1: slope of log2 lambda* over log2 T, seeds aligned by their seed value
    b1 = [r for part in summarize.B1_PARTS for r in rows(part) if r["state"] == "complete"]
    lengths = sorted({float(r[summarize.EPOCHS]) for r in b1})
    decays = sorted({float(r[summarize.WD]) for r in b1})
    b1_seeds = sorted({int(r["seed"]) for r in b1})
    sv = np.full((len(lengths), len(decays), len(b1_seeds)), np.nan)
    for r in b1:
        sv[lengths.index(float(r[summarize.EPOCHS])), decays.index(float(r[summarize.WD])),
           b1_seeds.index(int(r["seed"]))] = float(r["final_test_err"])
    used = [i for i, h in enumerate(summarize.headroom(sv)) if h >= summarize.MIN_HEADROOM]
    ts, tv = [lengths[i] for i in used], sv[used]
    optima = row_optima(ts, decays, np.nanmean(tv, axis=-1))
    point = float(np.polyfit(np.log2(ts), [o.log2_decay for o in optima], 1)[0])
    whole = np.percentile(whole_seed_bootstrap_slopes(ts, decays, tv), [2.5, 97.5])
    cell = np.percentile(per_cell_bootstrap_slopes(ts, decays, tv), [2.5, 97.5])
    each = per_seed_slopes(ts, decays, tv)
    t = t_interval("per_seed_t", each)
    label = "T = " + ", ".join(f"{x:g}" for x in ts)
    table.append({"claim": "b1", "measure": f"d log2 lambda* / d log2 T (raw), {label}", "seeds": len(b1_seeds),
                  "value": point, "t_lo": t.lo, "t_hi": t.hi, "boot_lo": float(whole[0]), "boot_hi": float(whole[1]),
                  "per_seed": " ".join(f"{x:+.3f}" for x in each),
                  "per_cell_lo": float(cell[0]), "per_cell_hi": float(cell[1]),
                  "note": "log2 lambda* " + ", ".join(f"T = {x:g}: {o.log2_decay:.2f}" for x, o in zip(ts, optima,
                                                                                                 strict=True))})
    # every run length, the underfit one included (what the slope would be without the headroom rule)
    all_optima = row_optima(lengths, decays, np.nanmean(sv, axis=-1))
    all_point = float(np.polyfit(np.log2(lengths), [o.log2_decay for o in all_optima], 1)[0])
    all_whole = np.percentile(whole_seed_bootstrap_slopes(lengths, decays, sv), [2.5, 97.5])
    all_cell = np.percentile(per_cell_bootstrap_slopes(lengths, decays, sv), [2.5, 97.5])
    all_t = t_interval("per_seed_t", per_seed_slopes(lengths, decays, sv))
    table.append({"claim": "b1", "measure": "d log2 lambda* / d log2 T (raw), every T (" +
                  ", ".join(f"{x:g}" for x in lengths) + ")", "seeds": len(b1_seeds), "value": all_point,
                  "t_lo": all_t.lo, "t_hi": all_t.hi, "boot_lo": float(all_whole[0]), "boot_hi": float(all_whole[1]),
                  "per_cell_lo": float(all_cell[0]), "per_cell_hi": float(all_cell[1]),
                  "note": "log2 lambda* " + ", ".join(f"T = {x:g}: {o.log2_decay:.2f}" for x, o in
                                                      zip(lengths, all_optima, strict=True))})
    print(f"b1 | raw slope {point:+.3f}: whole-seed [{whole[0]:+.3f}, {whole[1]:+.3f}], per-seed t "
          f"[{t.lo:+.3f}, {t.hi:+.3f}], per-cell [{cell[0]:+.3f}, {cell[1]:+.3f}] ({label})")

    fields = ["claim", "measure", "seeds", "value", "t_lo", "t_hi", "boot_lo", "boot_hi", "per_cell_lo",
              "per_cell_hi", "per_seed", "note"]
    with open(OUT / "paired.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        for row in table:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})

    # -- figures ---------------------------------------------------------------------------------
    colours = {"adam": "tab:red", "adamw": "tab:blue"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for n, c in curves.items():
        epochs = [p[0] for p in next(iter(c.values()))]
        err = np.array([[p[2] for p in c[s]] for s in seeds])
        loss = np.array([[p[1] for p in c[s]] for s in seeds])
        for ax, y in ((axes[0], err), (axes[1], loss)):
            ax.plot(epochs, np.median(y, axis=0), color=colours[n], label=f"{n} (median of {len(seeds)} seeds)")
            ax.fill_between(epochs, y.min(axis=0), y.max(axis=0), color=colours[n], alpha=0.2,
                            label=f"{n}: seed range")
        for s in seeds:
            axes[2].plot([p[1] for p in c[s]], [p[2] for p in c[s]], color=colours[n], alpha=0.5, marker=".")
    axes[0].set(xlabel="epoch", ylabel="test error (%)", title="Fig. 1: test error", ylim=(10, 60))
    axes[1].set(xlabel="epoch", ylabel="training loss", title="training loss", yscale="log")
    axes[2].axvline(level, color="k", ls=":", label=f"matched loss {level:.3f}")
    axes[2].set(xlabel="training loss (log)", ylabel="test error (%)", xscale="log", ylim=(10, 60),
                title="Fig. 3: error vs training loss (a line per seed)")
    axes[2].xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[2].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[2].set_xticks([0.3, 0.5, 1.0, 2.0])
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Round 1 (synthetic data), Adam vs AdamW at their best Fig. 2 cells (lr 2^-8, decay 2^-8), 8 seeds")
    fig.tight_layout()
    fig.savefig(OUT / "fig13.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, (restarts, by_epoch) in zip(axes, fig4.items(), strict=True):
        epochs = sorted(by_epoch)
        for k, (name, colour, shift) in enumerate(((f"{restarts} snapshot", "tab:orange", -0.8),
                                                   ("cosine run of that length", "tab:green", 0.8))):
            for e in epochs:
                vals = by_epoch[e][k]
                ax.scatter([e + shift] * len(vals), vals, color=colour, s=18, alpha=0.7,
                           label=name if e == epochs[0] else None)
                ax.plot([e + shift - 1.5, e + shift + 1.5], [np.mean(vals)] * 2, color=colour, lw=2)
        for row in table:
            if row["claim"] == "fig4" and str(row["measure"]).startswith(restarts + " "):
                e = int(str(row["measure"]).split("epoch ")[1].split(" ")[0])
                ax.annotate(f"paired diff {row['value']:+.1f}\n95% t [{row['t_lo']:+.1f}, {row['t_hi']:+.1f}]",
                            (e, max(max(by_epoch[e][0]), max(by_epoch[e][1])) + 2), ha="center", fontsize=8)
        ax.set(xlabel="epoch (period ends 10, 30, 70)", ylabel="test error (%)", xticks=epochs,
               title=f"Fig. 4: {restarts} vs cosine runs, 3 seeds (dots), mean (bar)", ylim=(0, 90))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(OUT / "fig4.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    x = np.log2(decays)
    for i, length in enumerate(lengths):
        m = np.nanmean(sv[i], axis=-1) * 100
        label = f"T = {length:g} epochs" + ("" if i in used else " (left out: underfit)")
        line, = ax.plot(x, m, marker="o", label=label, ls="-" if i in used else "--")
        ax.fill_between(x, np.nanmin(sv[i], axis=-1) * 100, np.nanmax(sv[i], axis=-1) * 100, color=line.get_color(),
                        alpha=0.15)
    for o, length in zip(optima, ts, strict=True):
        ax.axvline(o.log2_decay, color="grey", lw=0.8, ls=":")
        ax.annotate(f"T = {length:g}: {o.log2_decay:.2f}", (o.log2_decay, 42 - 3 * ts.index(length)), fontsize=8,
                    ha="center")
    ax.set(xlabel="log2 raw decay lambda", ylabel="test error (%) (mean; band: seed range)", ylim=(5, 45),
           xlim=(-11.5, -6.5),
           title=f"B.1: AdamW lr 2^-8, 3 seeds; raw slope {point:+.2f}, per-seed t [{t.lo:+.2f}, {t.hi:+.2f}]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(OUT / "b1.png", dpi=110)
    plt.close(fig)
    print(f"wrote {OUT / 'paired.csv'}, {OUT / 'fig13.png'}, {OUT / 'fig4.png'}, {OUT / 'b1.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The best cell of a sweep's results.csv: the rule the drafted parts of the suite use, fixed before they run.

    python docs/replication/best_cell.py docs/replication/fig2_adamw/results.csv            # -> "<lr> <decay>"
    python docs/replication/best_cell.py RESULTS.csv --lambda_norm 50 --num_train 1000 --batch 64
        # -> "<lr> <lambda_norm>" with lambda_norm = lambda* * sqrt(num_train * epochs / batch) (Appendix B.1)

Best = lowest mean final_test_err over seeds, among the (lr, weight_decay) cells whose seeds all completed
(a cell with a failed or missing seed is skipped, and said so on stderr). Ties: the smaller decay, then the smaller lr.
"""

from __future__ import annotations

import argparse
import math
import sys

from wdlab.experiments.results import best_cell, cell_means, read_results

LR, WD = "model.optimizer.lr", "model.optimizer.weight_decay"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results")
    parser.add_argument("--lambda_norm", type=float, metavar="EPOCHS",
                        help="print lambda_norm instead of lambda, converted at this run length in epochs")
    parser.add_argument("--num_train", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    rows = read_results(args.results)
    skipped = sorted({(float(r[LR]), float(r[WD])) for r in rows} - set(cell_means(rows, (LR, WD))))
    if skipped:
        print(f"best_cell: skipped {len(skipped)} cell(s) with a failed or missing seed: {skipped}", file=sys.stderr)
    best = best_cell(rows, LR, WD)
    if best is None:
        sys.exit("best_cell: no cell has all its seeds complete")
    (lr, wd), mean = best
    seeds = sum(1 for r in rows if (float(r[LR]), float(r[WD])) == (lr, wd))
    print(f"best_cell: lr {lr!r}, decay {wd!r}: mean test error {100 * mean:.2f} % over {seeds} seeds",
          file=sys.stderr)
    if args.lambda_norm is not None:
        wd = wd * math.sqrt(args.num_train * args.lambda_norm / args.batch)
    print(repr(lr), repr(wd))


if __name__ == "__main__":
    main()

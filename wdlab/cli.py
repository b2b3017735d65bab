"""The ``wdlab`` command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import wdlab

USAGE = """usage: wdlab [--version] <command> [args]

commands:
  optimizers   list the optimizer registry: entries, defaults, schedule and decay parameterization
"""


def list_optimizers() -> str:
    """The registry as a table (what ``wdlab optimizers`` prints)."""
    from wdlab.optim import REGISTRY

    rows = [("name", "optimizer", "decay", "schedule", "defaults")]
    for name, spec in REGISTRY.items():
        decay = "L2" if not spec.decoupled else f"decoupled, {spec.decay_parameterization}"
        defaults = ", ".join(f"{k}={v}" for k, v in spec.defaults.items() if k != "schedule")
        rows.append((name, spec.optimizer_class.__name__, decay, spec.schedule, defaults))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "--version":
        print(f"wdlab {wdlab.__version__}")
        return 0
    if args[0] == "optimizers":
        print(list_optimizers())
        return 0
    print(f"wdlab: unknown command {args[0]!r}; run 'wdlab --help' for the list of commands", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""``wdlab optimizers``: the registry as a table."""

from __future__ import annotations

from collections.abc import Sequence


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


def main(argv: Sequence[str]) -> int:
    print(list_optimizers())
    return 0

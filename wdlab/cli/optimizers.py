"""``wdlab optimizers``: the registry as a table, and a run's weight decay in all four forms.

    wdlab optimizers
    wdlab optimizers --convert --lr 0.001 --weight_decay_norm 0.05 --batch_size 128 --num_train 50000 --epochs 100

The listing shows where each entry comes from (``built-in``, ``register()``, or ``entry point <distribution>
<version>`` for the ``wdlab.optimizers`` entry-point group); an entry point that could not be loaded is named
on stderr with the reason, and the listing still exits 0.

``--convert`` takes exactly one of ``--weight_decay`` (the paper's lambda), ``--weight_decay_norm``,
``--weight_decay_timescale`` (tau in epochs) and ``--torch_weight_decay`` (torch.optim.AdamW's
``weight_decay``), plus the run (``--lr``, the global ``--batch_size``, ``--num_train``, ``--epochs`` of the
run or of the current restart period, optionally ``--steps_per_epoch``, default ceil(num_train / batch_size)),
and prints the table of :func:`wdlab.optim.convert_decay`. Bad input is one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
import warnings
from collections.abc import Sequence
from typing import NoReturn

from wdlab.cli.errors import report_errors

PROG = "wdlab optimizers"

#: The decay forms --convert takes and prints: option/field name -> what the value is.
FORMS = {
    "weight_decay": "lambda, the paper's (wdlab default): per-step decay eta_t * lambda",
    "weight_decay_norm": "lambda_norm = lambda * sqrt(B * T / b)",
    "weight_decay_timescale": "tau in epochs = 1 / (lambda * S)",
    "torch_weight_decay": "torch.optim.AdamW weight_decay = lambda / lr (decay lr_t * wd)",
}
_RUN_OPTIONS = ("lr", "batch_size", "num_train", "epochs", "steps_per_epoch")


class _InputError(ValueError):
    """A command-line option ``wdlab optimizers`` cannot use."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line through the command's error handler, not usage + error
        raise _InputError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="List the optimizer registry, or (--convert) show one run's weight decay in all four forms: "
        "weight_decay (the paper's lambda), weight_decay_norm, weight_decay_timescale (epochs) and torch's "
        "weight_decay.",
    )
    parser.add_argument("name", nargs="?", help="one entry: its description and every default")
    parser.add_argument("--convert", action="store_true", help="print the decay conversion table for a run")
    run = parser.add_argument_group("the run (with --convert)")
    run.add_argument("--lr", type=float, help="base learning rate alpha")
    run.add_argument("--batch_size", type=int, help="global batch size b (per-device batch x world size)")
    run.add_argument("--num_train", type=int, help="training-set size B")
    run.add_argument("--epochs", type=float, help="epochs T of the run (of the current period with warm restarts)")
    run.add_argument("--steps_per_epoch", type=int, help="optimizer steps per epoch S (default ceil(B / b))")
    forms = parser.add_argument_group("the decay, exactly one (with --convert)")
    for form, meaning in FORMS.items():
        forms.add_argument(f"--{form}", type=float, help=meaning)
    return parser


#: Short names of the main defaults in the listing (``wdlab optimizers NAME`` prints them all).
_SHORT = {"lr": "lr", "weight_decay": "wd", "weight_decay_norm": "wd_norm", "weight_decay_timescale": "tau"}
_PER_STEP = {"schedule": "eta_t*lambda", "lr": "lr_t*lambda", "corrected": "eta_t^2*lambda", None: "L2 in grad"}
#: The listing's width: its lines fit a 100-column terminal.
WIDTH = 100


def list_optimizers() -> str:
    """The registry as a table (what ``wdlab optimizers`` prints), one line per entry, with its source and main
    defaults (lr and the decay); lines longer than :data:`WIDTH` columns (a third-party entry's long source) are
    cut."""
    from wdlab.optim.registry import REGISTRY, origin_of

    rows = [("name", "optimizer", "decay", "per step", "schedule", "source", "defaults (all: NAME)")]
    for name, spec in REGISTRY.items():
        decay = "L2" if not spec.decoupled else spec.decay_parameterization
        defaults = ", ".join(f"{short} {_number(spec.defaults[key])}" for key, short in _SHORT.items()
                             if isinstance(spec.defaults.get(key), int | float))
        rows.append((name, spec.optimizer_class.__name__, decay, _PER_STEP[spec.decay_scaling], spec.schedule,
                     origin_of(name), defaults))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:6], widths, strict=True)) + "  " + r[6] for r in rows]
    return "\n".join(line if len(line) <= WIDTH else line[: WIDTH - 3] + "..." for line in lines)


def _number(value: float) -> str:
    """``0.000125`` -> ``1.25e-4``; ``0.001`` -> ``0.001``."""
    if value == 0 or abs(value) >= 1e-3:
        return f"{value:.4g}"
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def describe_optimizer(name: str) -> str:
    """``wdlab optimizers NAME``: the entry's description, decay, schedule, source and every default."""
    from wdlab.optim.registry import REGISTRY, origin_of

    spec = REGISTRY.lookup(name)
    decay = "L2 in the gradient" if not spec.decoupled else f"decoupled, {spec.decay_parameterization}"
    lines = [f"{spec.name}: {spec.description}",
             f"  optimizer  {spec.optimizer_class.__module__}.{spec.optimizer_class.__name__} ({origin_of(spec.name)})",
             f"  decay      {decay}, per step {_PER_STEP[spec.decay_scaling]}",
             "  defaults"]
    lines += [f"    {key:<24}{value}" for key, value in spec.defaults.items()]
    return "\n".join(lines)


def unavailable_lines() -> list[str]:
    """One line per ``wdlab.optimizers`` entry point that could not be added (what the listing puts on stderr)."""
    from wdlab.optim.registry import unavailable_entries

    return [f"{PROG}: optimizer {name!r} is not available: {why}" for name, why in unavailable_entries().items()]


def conversion_table(args: argparse.Namespace) -> str:
    """The table ``wdlab optimizers --convert`` prints (ValueError on bad input)."""
    from wdlab.optim import convert_decay

    missing = [f"--{key}" for key in _RUN_OPTIONS[:4] if getattr(args, key) is None]
    if missing:
        raise _InputError(f"--convert needs {', '.join(missing)} (the run the decay is for)")
    if not (math.isfinite(args.epochs) and args.epochs > 0):
        raise _InputError(f"--epochs must be a number > 0, got {args.epochs!r}")
    result = convert_decay(
        lr=args.lr, batch_size=args.batch_size, num_train=args.num_train, period_epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, **{form: getattr(args, form) for form in FORMS},
    )
    given = next(form for form in FORMS if getattr(args, form) is not None)
    lines = [
        f"run: lr {result.lr:g}, global batch b = {result.batch_size}, B = {result.num_train} training points, "
        f"T = {result.period_epochs:g} epochs, S = {result.steps_per_epoch} steps/epoch",
        "",
    ]
    rows = [("form", "value", "meaning")]
    for form, value in result.forms().items():
        shown = f"{value:.6g}" if math.isfinite(value) else "inf (no decay)"
        rows.append((form, shown, FORMS[form] + ("   <- given" if form == given else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r[:2], widths, strict=True)) + "  " + r[2] for r in rows]
    lines += [
        "",
        *textwrap.wrap(
            f"per-step decay at the schedule's peak (eta_t = 1): {result.weight_decay:.6g}; with decay_scaling "
            f"'schedule' it is eta_t * {result.weight_decay:.6g}, with 'corrected' (adamc, sgdc) "
            f"eta_t^2 * {result.weight_decay:.6g}", WIDTH),
    ]
    return "\n".join(line for raw in lines for line in (textwrap.wrap(raw, WIDTH) if len(raw) > WIDTH else [raw]))


def _run(args: argparse.Namespace) -> int:
    if args.convert:
        if args.name:
            raise _InputError(f"--convert takes no entry name (got {args.name!r})")
        print(conversion_table(args))
        return 0
    given = [f"--{key}" for key in (*_RUN_OPTIONS, *FORMS) if getattr(args, key) is not None]
    if given:
        raise _InputError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only with --convert")
    with warnings.catch_warnings():  # a broken entry point is reported below, once, without a warning's clutter
        warnings.simplefilter("ignore")
        table = describe_optimizer(args.name) if args.name else list_optimizers()
    print(table)
    for line in unavailable_lines():
        print(line, file=sys.stderr)
    return 0


def main(argv: Sequence[str]) -> int:
    return report_errors(PROG, (ValueError,), lambda: _run(build_parser().parse_args(argv)))

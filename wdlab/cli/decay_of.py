"""``wdlab decay-of``: which weight decay does an optimizer really apply? (:func:`wdlab.optim.decay_probe.decay_of`)

::

    wdlab decay-of torch.optim.AdamW --lr 1e-3 --weight_decay 0.01
    wdlab decay-of timm.optim.AdamWLegacy --lr 1e-3 --weight_decay 0.01 --corrected_weight_decay True
    wdlab decay-of torch.optim.SGD --lr 0.1 --momentum 0.9 --weight_decay 5e-4 --schedule constant
    wdlab decay-of adamc                       # a registry entry, with its defaults and schedule

Prints what was run, then one line per parameter group: the convention that fits, the per-step decay, the
paper's lambda it equals and the largest residual (or "ambiguous" / "no convention fits", with the numbers).
Bad input is one line on stderr, exit status 2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from wdlab.cli.errors import report_errors

PROG = "wdlab decay-of"

HELP = f"""usage: {PROG} OPTIMIZER [--KEY VALUE ...] [--schedule SCHEDULE [--schedule.KEY VALUE ...]]

Which weight decay does an optimizer apply? Runs it on a small float64 problem (zero gradients, and crafted
gradients with and without its decay, at its lr and at half of it, two parameter groups: the second with
half the lr and 3 x the weight decay) and fits the measured per-step decay against the conventions:
  schedule      eta_t * lambda           the paper; wdlab decay_scaling 'schedule'
  lr            lr_t * wd                torch.optim.AdamW, optax, Keras; wdlab decay_scaling 'lr'
  corrected     eta_t^2 * lambda         AdamC/SGDC; wdlab decay_scaling 'corrected'
  corrected_lr  lr_t^2 / lr_max * wd     timm corrected_weight_decay=True
  l2            wd * theta added to the gradient (coupled with the moments: torch Adam, SGD)
  none          no decay
(eta_t = lr_t / the group's initial lr). One line per group: the convention, the per-step decay, the paper's
lambda it equals, the largest residual; "ambiguous" or "no convention fits" with the numbers.

arguments:
  OPTIMIZER             an importable optimizer class or factory (torch.optim.AdamW, timm.optim.AdamWLegacy,
                        my_package.MyOpt), or a wdlab registry name (adamw, sgdw, ...: 'wdlab optimizers')
  --KEY VALUE           the optimizer's keyword arguments, VALUE a Python literal (1e-3, (0.9,0.99), True) or a
                        bare word as a string; for a registry name: its hyperparameters (defaults otherwise)
  --schedule SCHEDULE   cosine (default: over the probe's 40 steps), constant (then eta_t = 1 and eta_t*lambda
                        cannot be told from eta_t^2*lambda), multistep, warm_restarts (one step = one epoch), or
                        a torch LR scheduler class path (torch.optim.lr_scheduler.StepLR); a registry entry
                        runs its own schedule unless given
  --schedule.KEY VALUE  the schedule's keyword arguments (--schedule.step_size 10 --schedule.gamma 0.5)
  -h, --help            show this help
"""

_KEY = re.compile(r"[A-Za-z_]\w*")


class _InputError(ValueError):
    """A command line ``wdlab decay-of`` cannot use."""


def parse(argv: Sequence[str]) -> tuple[str, str | None, dict[str, Any], dict[str, Any]]:
    """``OPTIMIZER [--KEY VALUE ...]`` -> (optimizer, schedule, its keyword arguments, the schedule's)."""
    from wdlab.optim.decay_probe import parse_value

    args = list(argv)
    if not args or args[0].startswith("-"):
        raise _InputError("give the optimizer first, e.g. 'wdlab decay-of torch.optim.AdamW --lr 1e-3 "
                          "--weight_decay 0.01' ('wdlab decay-of --help')")
    optimizer, rest = args[0], args[1:]
    schedule: str | None = None
    kwargs: dict[str, Any] = {}
    schedule_kwargs: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        token = rest[i]
        if not token.startswith("--"):
            raise _InputError(f"unexpected {token!r}: keyword arguments are --KEY VALUE pairs after the optimizer")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(rest):
                raise _InputError(f"--{key} needs a value, e.g. --{key} 0.01")
            value = rest[i + 1]
            i += 1
        i += 1
        target, name = (schedule_kwargs, key[len("schedule."):]) if key.startswith("schedule.") else (kwargs, key)
        if key == "schedule":
            if schedule is not None:
                raise _InputError("--schedule is given twice; give it once")
            schedule = value
            continue
        if not _KEY.fullmatch(name):
            raise _InputError(f"--{key} is not a keyword argument name; write --KEY VALUE, e.g. --weight_decay 0.01")
        if name in target:
            raise _InputError(f"--{key} is given twice; give it once")
        try:
            target[name] = parse_value(value)
        except ValueError as error:
            raise _InputError(f"--{key}: {error}") from None
    return optimizer, schedule, kwargs, schedule_kwargs


def _run(argv: Sequence[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(HELP, end="")
        return 0
    optimizer, schedule, kwargs, schedule_kwargs = parse(argv)
    from wdlab.optim.decay_probe import LR_SCALE, STEPS, decay_of

    verdicts = decay_of(optimizer, schedule=schedule, schedule_kwargs=schedule_kwargs, **kwargs)
    given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    registry = "." not in optimizer
    shown = f"schedule {schedule or 'cosine'}" if schedule or not registry else "the entry's own schedule"
    extra = ", ".join(f"{k}={v!r}" for k, v in schedule_kwargs.items())
    name = f"registry entry {optimizer!r}{f' with {given}' if given else ''}" if registry else f"{optimizer}({given})"
    print(f"{name}: {shown}{f' ({extra})' if extra else ''} over {STEPS} steps, "
          f"{str(verdicts[0].dtype).removeprefix('torch.')} weights, runs also at {LR_SCALE:g} x lr and without decay")
    for verdict in verdicts:
        print(verdict.line())
    return 0


def main(argv: Sequence[str]) -> int:
    return report_errors(PROG, (ValueError,), lambda: _run(argv))

"""Argument checks shared by every layer (plain Python; no torch, no Lightning)."""

from __future__ import annotations

import numbers


def check_int(name: str, value: object, minimum: int, extra: str = "") -> int:
    """Return ``value`` as an int if it is a whole number >= ``minimum``, else raise ValueError naming ``name``.

    ``bool`` is rejected on purpose: ``True`` would silently pass as 1 from a YAML typo.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}{extra}, got {value!r}")
    return int(value)

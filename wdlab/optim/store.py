""":class:`OptimizerRegistry`: entries by name -- the built-in ones, those added with
:meth:`~OptimizerRegistry.register` and the ``wdlab.optimizers`` entry points -- with where each came from and
why a broken entry point is missing.

Entry points are loaded once per registry, the first time it is used (looked up, listed, or registered into).
A broken entry point (its module fails to import, it gives no valid spec, its name is taken) is skipped with one
warning naming the entry point and its distribution, so the built-in entries and every other entry keep working;
asking for that name then fails with the same reason (:meth:`~OptimizerRegistry.unavailable_entries`).

wdlab's own instance, with the built-in entries, is :data:`wdlab.optim.REGISTRY`; a test builds a fresh one
(``OptimizerRegistry(BUILTIN)``), or snapshots the default one with :meth:`~OptimizerRegistry.restoring`.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import torch
from torch.optim import Optimizer

from wdlab.optim.factory import build, check_spec
from wdlab.optim.schedules import ScheduledLR
from wdlab.optim.spec import OptimizerSpec, resolve

#: The entry-point group packages declare their entries in.
ENTRY_POINT_GROUP = "wdlab.optimizers"

#: How a registry finds the entry points of a group (importlib.metadata's, unless a registry is given another).
EntryPointFinder = Callable[[str], Iterable[importlib.metadata.EntryPoint]]


def _installed_entry_points(group: str) -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=group)


class OptimizerRegistry(Mapping[str, OptimizerSpec]):
    """Entries by name: ``builtin`` first (never replaced), then entry points and :meth:`register` calls in the
    order added. A read-only mapping; the first use loads the entry points of ``group`` (found by
    ``entry_points``, default: the installed distributions')."""

    def __init__(self, builtin: Mapping[str, OptimizerSpec], *, group: str = ENTRY_POINT_GROUP,
                 entry_points: EntryPointFinder = _installed_entry_points) -> None:
        self.builtin: Mapping[str, OptimizerSpec] = MappingProxyType(dict(builtin))
        self.group = group
        self._find_entry_points = entry_points
        self._entries: dict[str, OptimizerSpec] = dict(builtin)
        self._origins: dict[str, str] = dict.fromkeys(builtin, "built-in")
        self._unavailable: dict[str, str] = {}  # entry-point name -> why it is not in the registry
        self._entry_points_loaded = False

    # -- the mapping ----------------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> OptimizerSpec:
        self._load_entry_points()
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        self._load_entry_points()
        return iter(list(self._entries))  # a copy: registering while iterating must not break the loop

    def __len__(self) -> int:
        self._load_entry_points()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def __repr__(self) -> str:
        return f"REGISTRY({', '.join(self)})"

    # -- adding and asking ----------------------------------------------------------------------------------------
    def register(self, spec: OptimizerSpec, *, replace: bool = False) -> OptimizerSpec:
        """Add ``spec`` under ``spec.name``; every lookup by name sees it from then on.

        The spec is checked first (:func:`wdlab.optim.factory.check_spec`: name, class, capability fields,
        defaults, and one construction with its defaults). A name already taken is refused unless
        ``replace=True``; a built-in name is always refused. Returns ``spec``, so
        ``LION = register(OptimizerSpec(...))`` works. Raises ValueError (one line: the problem and the fix).
        """
        self._load_entry_points()  # so a clash with an installed entry point is found now, not later
        self._add(spec, replace=replace, origin="register()")
        return spec

    def origin_of(self, name: str) -> str:
        """Where entry ``name`` comes from: ``built-in``, ``register()`` or ``entry point <distribution> <version>``."""
        self._load_entry_points()
        return self._origins[name]

    def unavailable_entries(self) -> Mapping[str, str]:
        """The entry points that could not be added, by name, with the reason (one line each)."""
        self._load_entry_points()
        return MappingProxyType(self._unavailable)

    def lookup(self, name: str) -> OptimizerSpec:
        """The entry ``name``, matched case-insensitively (``AdamW`` is ``adamw``: registry names are lowercase);
        ValueError (one line) naming the known entries with the closest one ("did you mean"), or why an entry
        point is missing."""
        if name not in self and isinstance(name, str) and name.lower() in self:
            name = name.lower()
        if name not in self:
            if name in self._unavailable:
                raise ValueError(f"optimizer {name!r} is not available: {self._unavailable[name]}")
            close = difflib.get_close_matches(str(name).lower(), list(self), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown optimizer {name!r}{hint}; known: {', '.join(self)}")
        return self._entries[name]

    def resolve_hyperparameters(self, name: str, overrides: Mapping[str, Any],
                                ) -> tuple[OptimizerSpec, dict[str, Any]]:
        """The entry and its hyperparameters after ``overrides``, validated (ValueError on bad input)."""
        spec = self.lookup(name)
        return spec, resolve(spec, overrides)

    def build_optimizer(
        self,
        name: str | OptimizerSpec,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        *,
        steps_per_epoch: int,
        max_epochs: int,
        batch_size: int,
        num_train: int,
        fused: bool | None = None,
        **overrides: Any,
    ) -> tuple[Optimizer, ScheduledLR]:
        """The entry ``name`` (or a spec: one not registered here is checked first) built by
        :func:`wdlab.optim.factory.build`, which documents the arguments."""
        if isinstance(name, OptimizerSpec):
            spec = name
            if self._entries.get(spec.name) is not spec:
                check_spec(spec)
        else:
            spec = self.lookup(name)
        return build(spec, params, steps_per_epoch=steps_per_epoch, max_epochs=max_epochs, batch_size=batch_size,
                     num_train=num_train, fused=fused, overrides=overrides)

    @contextmanager
    def restoring(self) -> Iterator[OptimizerRegistry]:
        """Within the block, change this registry at will: on leaving it, it holds what it held on entering."""
        self._load_entry_points()
        saved = (dict(self._entries), dict(self._origins), dict(self._unavailable), self._entry_points_loaded)
        try:
            yield self
        finally:
            for target, content in zip((self._entries, self._origins, self._unavailable), saved, strict=False):
                target.clear()
                target.update(content)
            self._entry_points_loaded = saved[3]

    # -- internals ------------------------------------------------------------------------------------------------
    def _add(self, spec: OptimizerSpec, *, replace: bool, origin: str) -> None:
        check_spec(spec)
        name = spec.name
        if name in self.builtin:
            raise ValueError(f"optimizer name {name!r} is a built-in entry and cannot be replaced; "
                             f"register yours under another name")
        if name in self._entries and not replace:
            raise ValueError(f"optimizer name {name!r} is already registered ({self._origins[name]}); "
                             f"pass replace=True to replace it, or choose another name")
        self._entries[name] = spec
        self._origins[name] = origin
        self._unavailable.pop(name, None)

    def _load_entry_points(self) -> None:
        """Add the entry points of the group, once; a broken one is skipped with a warning."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True  # first: an entry point's module may use the registry as it loads
        by_name: dict[str, list[importlib.metadata.EntryPoint]] = {}
        for ep in self._find_entry_points(self.group):
            found = by_name.setdefault(ep.name, [])
            if all(ep.value != other.value for other in found):  # one distribution seen twice on sys.path is one
                found.append(ep)
        for name, eps in by_name.items():
            if len(eps) > 1:
                declared = "; ".join(f"{ep.value} ({_distribution(ep)})" for ep in eps)
                self._skip(name, f"several distributions declare entry point {name!r} ({declared}); "
                                 f"uninstall all but one")
                continue
            (ep,) = eps
            where = f"entry point {name!r} = {ep.value!r} of distribution {_distribution(ep)}"
            try:
                loaded = ep.load()
                spec = loaded if isinstance(loaded, OptimizerSpec) or not callable(loaded) else loaded()
                if not isinstance(spec, OptimizerSpec):
                    raise ValueError(f"it gives {type(spec).__name__}, not an OptimizerSpec "
                                     f"(or a function returning one)")
                if spec.name != name:
                    raise ValueError(f"it gives an entry named {spec.name!r}; name the entry point after the entry")
                origin = f"entry point {_distribution(ep)}"
                if self._entries.get(name) is spec:  # its module registered it while being imported
                    self._origins[name] = origin
                else:
                    self._add(spec, replace=False, origin=origin)
            except Exception as error:  # any failure of a third party's code must not break wdlab's own entries
                self._skip(name, f"{where} failed: {type(error).__name__}: {' '.join(str(error).split())}")

    def _skip(self, name: str, reason: str) -> None:
        self._unavailable[name] = reason
        warnings.warn(f"wdlab skipped optimizer {name!r}: {reason}", stacklevel=4)


def _distribution(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "(unknown distribution)"
    return f"{dist.metadata['Name'] or dist.name} {dist.version}"

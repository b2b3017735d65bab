"""Which configuration a run resumed (or evaluated) from a checkpoint runs with -- one rule, whatever the
checkpoint is called (``--ckpt_path FILE``, ``last`` or ``auto``):

* the **model** and the **data** are those the checkpoint was trained with (its ``hyper_parameters`` and
  ``datamodule_hyper_parameters``): what the command line and config files leave unset is taken from it;
* an option that is given and contradicts the checkpoint (``--model.optimizer.lr 0.01`` on a run trained at
  0.001, another ``base_width``, another ``batch_size``) is refused in one line naming the key -- never
  silently dropped (what LightningCLI does with ``--ckpt_path FILE``) nor silently applied to a run that
  was trained otherwise;
* except the data options that only say where the data is and how it is loaded
  (:data:`RESUMABLE_DATA_KEYS`), which may change, and the trainer's options, which are the command's own
  (``max_epochs`` to train longer; the global batch -- devices x batch size x accumulation -- is checked
  against the checkpoint when training starts).

"Given" means: named on the command line (``--model.X``, ``--data.X``), or set by a config file to a value
other than the default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from wdlab.cli.run_dirs import configured_checkpoint_dir
from wdlab.training.checkpoints import CheckpointError

__all__ = ["RESUMABLE_DATA_KEYS", "adopt_checkpoint_configuration", "checkpoint_file", "flatten"]

#: Data options that may differ from the checkpoint's: where the data lies, how it is loaded and placed,
#: and the evaluation batch size. None of them changes what a training step computes.
RESUMABLE_DATA_KEYS = frozenset(
    {"root", "cache_dir", "verify_checksums", "num_workers", "channels_last", "on_device", "eval_batch_size"}
)

_SECTIONS = ("model", "data")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"a.b.c": leaf}``, ``init_args`` levels dropped (``net.init_args.depth`` ->
    ``net.depth``) and Lightning's ``_class_path`` read as ``class_path``."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if not isinstance(value, Mapping) or not value:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        if key in ("_instantiator", "__path__"):  # jsonargparse's bookkeeping: where a component file was read from
            continue
        key = "class_path" if key == "_class_path" else key
        path = prefix if key == "init_args" else f"{prefix}.{key}" if prefix else key
        flat.update(flatten(item, path))
    return flat


def checkpoint_file(config: Any, ckpt_path: str | None) -> Path | None:
    """The file a resume or evaluation would read: ``ckpt_path`` itself, or for ``last``/``auto`` the run
    directory's ``checkpoints/last.ckpt`` (:func:`~wdlab.cli.run_dirs.configured_checkpoint_dir`); ``None``
    when there is none yet."""
    if not ckpt_path:
        return None
    if ckpt_path not in ("last", "auto"):
        return Path(ckpt_path)
    last = configured_checkpoint_dir(config) / "last.ckpt"
    return last if last.is_file() else None


def _cli_keys(args: Sequence[str]) -> set[str]:
    """``--model.optimizer.lr 0.01`` / ``--data.init_args.batch_size=64`` -> ``{"model.optimizer.lr", ...}``."""
    keys = set()
    for arg in args:
        if arg.startswith("--") and arg[2:].split(".")[0].split("=")[0] in _SECTIONS:
            name = arg[2:].split("=", 1)[0].rstrip("+")
            keys.add(".".join(part for part in name.split(".") if part != "init_args"))
    return keys


def _named_on_cli(key: str, cli_keys: set[str]) -> bool:
    return any(key == named or key.startswith(named + ".") for named in cli_keys)


def adopt_checkpoint_configuration(
    config: Any, defaults: Any, args: Sequence[str], path: Path, ckpt_path: str
) -> dict[str, Any]:
    """The ``{"model": ..., "data": ...}`` to merge into ``config`` (one subcommand's) so that it runs with
    the checkpoint's model and data; raises :class:`CheckpointError` naming the first given option that
    contradicts the checkpoint. ``defaults``: the same subcommand's config with no options given."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    saved = {
        "model": dict(checkpoint.get("hyper_parameters") or {}),
        "data": dict(checkpoint.get("datamodule_hyper_parameters") or {}),
    }
    cli_keys = _cli_keys(args)
    conflicts: list[str] = []
    adopted: dict[str, Any] = {}
    for section in _SECTIONS:
        if not saved[section] or config.get(section) is None:
            continue
        current = flatten(config[section], section)
        default = flatten(defaults.get(section), section) if defaults.get(section) is not None else {}
        stored = flatten(saved[section], section)
        for key, value in current.items():
            given = _named_on_cli(key, cli_keys) or default.get(key, object()) != value
            if not given or (section == "data" and key.split(".")[-1] in RESUMABLE_DATA_KEYS):
                continue
            if key not in stored:
                conflicts.append(f"{key} is {value!r} here but not set in the checkpoint")
            elif stored[key] != value:
                conflicts.append(f"{key} is {value!r} here but {stored[key]!r} in the checkpoint")
        adopted[section] = _as_config(section, saved[section], current, cli_keys, default)
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise CheckpointError(
            f"--ckpt_path {ckpt_path}: {conflicts[0]}{more}; a run resumed or evaluated from a checkpoint keeps the "
            "model and data it was trained with: drop the option (the checkpoint's value is used), or start a new "
            "run (options that may change: the trainer's, e.g. --trainer.max_epochs, and data."
            f"{{{','.join(sorted(RESUMABLE_DATA_KEYS))}}})"
        )
    return adopted


def _as_config(section: str, saved: dict[str, Any], current: dict[str, Any], cli_keys: set[str],
               default: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's section in the shape LightningCLI parses, keeping the given resumable data options."""
    saved = {k: v for k, v in saved.items() if k != "_instantiator"}
    if section == "model":
        if "_class_path" in saved:  # a LightningCLI subclass-mode model (LightningCLI's own rule)
            return {"class_path": saved.pop("_class_path"), "dict_kwargs": saved}
        return saved
    init_args = {k: v for k, v in saved.items() if k != "_class_path"}
    for name in RESUMABLE_DATA_KEYS:
        key = f"data.{name}"
        if key in current and (_named_on_cli(key, cli_keys) or default.get(key, object()) != current[key]):
            init_args[name] = current[key]
    if "_class_path" in saved:
        return {"class_path": saved["_class_path"], "init_args": init_args}
    return init_args

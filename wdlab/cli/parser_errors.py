"""A configuration the LightningCLI parser refuses, as one line that says where the bad key is and how to find
the right one.

jsonargparse prints a usage block and a multi-line error (a subclass-typed section lists why each type of
its union failed); :class:`ConfigError` carries the one line the user needs, which
:func:`wdlab.cli.errors.report_errors` prints.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI

__all__ = ["ConfigError", "explain_parser_error", "usage_error_line"]


class ConfigError(ValueError):
    """A configuration LightningCLI rejects, or whose model/data/trainer cannot be built (one line)."""


def usage_error_line(stderr: str) -> str:
    """jsonargparse's usage block plus ``error: ...`` on stderr -> the error alone, on one line."""
    match = re.search(r"^error:(.*)", stderr, re.MULTILINE | re.DOTALL)
    return " ".join((match.group(1) if match else stderr).split())


def explain_parser_error(message: str, args: Sequence[str]) -> str:
    """The parser's one-line refusal plus where the bad key is and how to find the right one: an option
    from a config file names that file (jsonargparse does not)."""
    unknown = re.search(r"does not accept option '([^']+)'", message)
    if unknown:
        key = unknown.group(1)
        for config in _config_files(args):
            if _yaml_has_key(config, key):
                help_command = f"wdlab {_subcommand(args)} --help_all"
                return f"{message} (set in {config}); check its spelling: '{help_command}' lists the options"
    keys = re.match(r'Parser key "([^"]+)": Unexpected keys: \{([^}]*)\}', message)
    if keys and keys.group(1).endswith("optimizer"):
        return _unknown_optimizer_keys(keys.group(1), re.findall(r"'([^']+)'", keys.group(2)))
    if unknown or message.startswith("unrecognized arguments"):
        return f"{message}; check the spelling: 'wdlab {_subcommand(args)} --help_all' lists every option"
    if "Does not validate against any of the Union subtypes" in message:
        # A subclass-typed section (data: LightningDataModule | None): jsonargparse lists why each type
        # failed; the constructor's own reason is the one that is not "Expected a <class 'NoneType'>".
        reasons = [r.strip() for r in re.split(r" - ", message.split("Errors:", 1)[-1])[1:]]
        real = [r for r in reasons if not r.startswith("Expected a <class 'NoneType'>")]
        if real:
            key = re.match(r'Parser key "([^"]+)"', message)
            reason = real[0].split(" Given value type:")[0]
            given = re.search(r" Given value: (.*)$", message)
            if given and "Got value" not in reason:  # e.g. an optional float given a word
                reason = f"{reason}. Got value: {given.group(1)}"
            return f"{key.group(1) + ': ' if key else ''}{reason}"
    return message


def _unknown_optimizer_keys(section: str, names: list[str]) -> str:
    """A misspelled key under ``model.optimizer``: the key, the closest valid one and the valid ones (not the
    section's values, which jsonargparse dumps)."""
    import difflib

    from wdlab.optim.spec import HYPERPARAMETERS

    valid = ["name", *HYPERPARAMETERS]
    described = []
    for name in names:
        close = difflib.get_close_matches(name, valid, n=1)
        described.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return (f"{section}: unknown key{'s' if len(names) > 1 else ''} {', '.join(described)}; "
            f"the keys are: {', '.join(valid)}")


def _subcommand(args: Sequence[str]) -> str:
    """The subcommand named in ``args``; ``fit`` for bare options (``wdlab sweep`` and ``ensemble`` build a fit)."""
    return next((a for a in args if a in LightningCLI.subcommands()), "fit")


def _config_files(args: Sequence[str]) -> list[str]:
    files, arguments = [], iter(args)
    for arg in arguments:
        if arg in ("--config", "-c"):
            files.append(next(arguments, ""))
        elif arg.startswith("--config="):
            files.append(arg.partition("=")[2])
    return files


def _yaml_has_key(path: str, dotted: str) -> bool:
    import yaml

    try:
        node: Any = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, dict) and isinstance(node.get("init_args"), dict) and part in node["init_args"]:
            node = node["init_args"][part]
        else:
            return False
    return True

"""``wdlab fit|validate|test|predict``: LightningCLI over ImageClassifier and any datamodule, with wdlab's defaults.

What wdlab adds to LightningCLI, all of it editing the parsed config or the subcommand's arguments:

* the run directory is pinned to ``runs/<logger name>`` and an evaluation writes into its ``eval/``
  (:mod:`wdlab.cli.run_dirs`), and ``--ckpt_path`` is resolved and checked before anything is written
  (:func:`wdlab.training.resume.resolve_ckpt_path`);
* on CUDA, the trainer defaults of :func:`wdlab.training.fastpaths.cuda_trainer_defaults`;
* ``--checkpoint`` (:class:`~wdlab.training.ResumableCheckpoint`) and ``--snapshots``
  (:class:`~wdlab.training.AnytimeSnapshots`) are always present; ``--test_after_fit``; ``--sweep``
  (the presets ``wdlab sweep`` reads);
* a refused option is one line naming where it was set (:mod:`wdlab.cli.parser_errors`), and the
  optimizer's name and keys are checked right after parsing, before the seed is set or anything is built;
  a run stopped by a signal prints the command that resumes it;
* the terminal: :class:`~wdlab.training.progress.RunProgress` is the default progress bar (unless
  ``--trainer.enable_progress_bar false`` or a ``ProgressBar`` callback is given), Lightning's model
  summary is off by default (wdlab prints the parameter count with the decay table), and the start-up
  lines that are not about the run are silenced (:func:`wdlab.training.progress.quiet_startup`);
  ``--help`` is short (:mod:`wdlab.cli.short_help`), ``--help_all`` the full list.

Other commands build a model from the same options with :func:`wdlab.cli.build.build_from_options`.
"""

from __future__ import annotations

import shlex
import signal
import sys
from argparse import ArgumentError
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from wdlab.cli.checkpoint_config import adopt_checkpoint_configuration, checkpoint_file
from wdlab.cli.errors import one_line, report_errors
from wdlab.cli.parser_errors import ConfigError, explain_parser_error
from wdlab.cli.run_dirs import configured_checkpoint_dir, pin_evaluation_dir, pin_logger_version
from wdlab.cli.short_help import full_help_args, short_help, wants_short_help
from wdlab.data import DatasetError
from wdlab.optim import decay_table, param_groups, resolve_hyperparameters
from wdlab.training import AnytimeSnapshots, ImageClassifier, ResumableCheckpoint, check_checkpoint
from wdlab.training.checkpoints import Preempted
from wdlab.training.fastpaths import DEFAULT_PRECISION, cuda_trainer_defaults
from wdlab.training.progress import RunProgress, quiet_startup, say, write
from wdlab.training.resume import (
    check_run_directory_writable,
    is_rank_zero_process,
    resolve_ckpt_path,
    run_directory,
)

__all__ = ["STOP_EXIT_STATUS", "SUBCOMMANDS", "WdlabCLI", "build_cli", "main", "resume_command"]


class WdlabCLI(LightningCLI):
    """LightningCLI with wdlab's arguments, run directory, checkpoint checks and test after fit."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="after 'fit', evaluate the final model on the test set (logs test/err, test/err5)",
        )
        parser.add_argument(
            "--print_decay",
            action="store_true",
            help="print the table of parameter groups (decayed or not, tensors, shapes) and exit",
        )
        parser.add_argument(
            "--sweep",
            type=dict | None,
            default=None,
            help="grid presets read by 'wdlab sweep' ({grid: {key: [values]}, seeds: K}); fit ignores them",
        )
        # Always present: checkpoints/last.ckpt at every epoch end (+ every N steps, + on SIGTERM)
        # and a snapshot at the end of every schedule period.
        parser.add_lightning_class_args(ResumableCheckpoint, "checkpoint")
        parser.add_lightning_class_args(AnytimeSnapshots, "snapshots")
        parser.set_defaults(
            {
                "checkpoint.save_top_k": 0,  # last.ckpt and the snapshots; set a monitor for best-k
                "model.net": {"class_path": "wdlab.models.PreActResNet"},
                "data": {"class_path": "wdlab.data.BuiltinDataModule"},
            }
        )

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        logger = config.get("trainer", {}).get("logger") if config is not None else None
        pin_logger_version(logger)
        if self.subcommand in ("validate", "test", "predict"):
            pin_evaluation_dir(config)
        if config is not None and config.get("trainer") is not None:  # bf16-mixed + cudnn benchmark on CUDA
            trainer_config = config["trainer"]
            for key, value in cuda_trainer_defaults(trainer_config).items():
                trainer_config[key] = value
            if trainer_config.get("precision") is None:
                trainer_config["precision"] = DEFAULT_PRECISION
        if self.subcommand != "fit":  # evaluating into a run directory must not replace its config.yaml
            self.save_config_callback = None
        self.writes_run_files = self.subcommand == "fit" and config is not None and not self._writes_nothing(config)

    def _writes_nothing(self, config: Any) -> bool:
        """A fit that must not write into the current directory: ``fast_dev_run`` (a smoke test), or no
        logger and no ``default_root_dir`` (Lightning would put checkpoints in the current directory).
        Its checkpoints, snapshots and config.yaml are turned off (it can still resume from one)."""
        trainer_config = config.get("trainer") or {}
        if trainer_config.get("fast_dev_run"):
            reason = "--trainer.fast_dev_run"
        elif trainer_config.get("logger") in (None, False) and trainer_config.get("default_root_dir") is None:
            reason = "no logger and no --trainer.default_root_dir"
        else:
            return False
        config["checkpoint"]["save_last"] = False
        config["snapshots"]["save"] = False
        self.save_config_callback = None
        say(f"wdlab: {reason}: this run writes no checkpoints, snapshots or config.yaml "
                       "(give it a logger or --trainer.default_root_dir DIR to keep them)")
        return True

    def _decay_table(self) -> str:
        net = getattr(self.model, "net", self.model)
        groups = param_groups(net, decay_bias_and_norm=getattr(self.model, "decay_bias_and_norm", True))
        return decay_table(net, groups)

    def _resolve_ckpt_path(self) -> None:
        if self.config[self.subcommand].get("print_decay"):
            print(self._decay_table())
            raise SystemExit(0)
        kwargs = self.config_init[self.subcommand]
        ckpt_path = kwargs.get("ckpt_path")
        # A fit that writes nothing overwrites nothing: no refusal for a run directory that holds a run.
        # fast_dev_run swaps the logger for a dummy without a directory: find the run's last.ckpt from the config
        directory = configured_checkpoint_dir(self.config[self.subcommand]) if self.trainer.fast_dev_run else None
        resolved = resolve_ckpt_path(self.trainer, self.model, ckpt_path, fitting=self.writes_run_files,
                                     directory=directory)
        kwargs["ckpt_path"] = resolved
        logs = self.writes_run_files or (bool(self.trainer.loggers) and not self.trainer.fast_dev_run)
        if logs and is_rank_zero_process():
            check_run_directory_writable(self.trainer, fitting=self.writes_run_files)
        seed = self.config[self.subcommand].get("seed_everything")
        seeded = f", seed {seed}" if seed is not None and seed is not False else ""
        if self.writes_run_files:
            start = f"resuming from {resolved}" if resolved else "starting"
            say(f"wdlab: run directory {run_directory(self.trainer)} ({start}{seeded})")
        if self.subcommand == "fit":  # so that a parameter silently left out of the decay is visible
            net = getattr(self.model, "net", self.model)
            count = sum(p.numel() for p in net.parameters())
            say(f"wdlab: {type(net).__name__}, {count:,} parameters; parameter groups\n{self._decay_table()}")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # The options as given: which model/data keys were named on the command line (see _parse_ckpt_path).
        self.given_args = [str(a) for a in (sys.argv[1:] if args is None else args) if isinstance(a, str)]
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        optimizer = self.config[subcommand].get("model", {}).get("optimizer") if subcommand else None
        if isinstance(optimizer, dict) and optimizer.get("name") is not None:
            # Bad optimizer names and values fail now, before the seed is set and the Trainer is built.
            resolve_hyperparameters(optimizer["name"], {k: v for k, v in optimizer.items() if k != "name"})

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The Trainer, with :class:`~wdlab.training.progress.RunProgress` as its progress bar unless the progress
        bar is off or the configuration gives a ``ProgressBar`` callback."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer_config = {**(config.get("trainer") or {}), **kwargs}
        callbacks = trainer_config.get("callbacks")
        callbacks = [] if callbacks is None else list(callbacks) if isinstance(callbacks, list) else [callbacks]
        if trainer_config.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            kwargs["callbacks"] = [*callbacks, RunProgress()]
        return super().instantiate_trainer(**kwargs)

    def _parse_ckpt_path(self) -> None:
        # A private LightningCLI hook, overridden (the one private Lightning API outside
        # wdlab.training._lightning): LightningCLI reads the checkpoint's hyperparameters here, with no
        # public hook before it, and lets them silently replace the model options given with
        # --ckpt_path FILE (and not with last/auto). wdlab applies one rule for every ckpt_path
        # (wdlab.cli.checkpoint_config): the checkpoint's model and data, refusing given options that
        # contradict them. The file is checked first: a truncated one gives one line, not a traceback.
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        path = checkpoint_file(config, ckpt_path)
        if path is None:
            return
        check_checkpoint(path)
        defaults = self.parser.parse_args([subcommand])[subcommand]
        adopted = adopt_checkpoint_configuration(config, defaults, getattr(self, "given_args", []), path, ckpt_path)
        if adopted:
            self.config = self.parser.parse_object({subcommand: adopted}, self.config)

    before_fit = before_validate = before_test = before_predict = _resolve_ckpt_path

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit", True) and not self.trainer.interrupted:
            self.trainer.test(self.model, datamodule=self.datamodule, verbose=True)


#: The LightningCLI subcommands wdlab runs.
SUBCOMMANDS = tuple(LightningCLI.subcommands())


def build_cli(args: Sequence[str] | None, run: bool = True) -> WdlabCLI:
    """The LightningCLI over ImageClassifier and any datamodule, with wdlab's defaults.

    ``run=True``: ``args`` start with a subcommand (``fit``, ``validate``, ``test``, ``predict``) which is
    executed. ``run=False``: ``args`` are just options (``--config X ...``); the model, datamodule and
    trainer are instantiated and returned unused (``wdlab ensemble`` builds its model this way).
    """
    quiet_startup()
    return WdlabCLI(
        ImageClassifier,
        L.LightningDataModule,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        trainer_defaults={
            "enable_model_summary": False,  # wdlab prints the parameter count (a summary would list the metrics)
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "runs", "name": "default", "default_hp_metric": False},
            },
        },
        args=None if args is None else list(args),  # None: LightningCLI reads sys.argv itself
        # Errors raise (one line from main, no usage dump; --help still prints it) and abbreviated
        # options are refused (argparse would silently read --trainer.max_e as --trainer.max_epochs).
        parser_kwargs={
            "prog": "wdlab",
            "exit_on_error": False,
            "allow_abbrev": False,
            **{command: {"exit_on_error": False, "allow_abbrev": False} for command in SUBCOMMANDS},
        },
        run=run,
    )


#: Exit status of ``wdlab fit`` stopped by a signal, after ``last.ckpt`` was saved: SIGTERM is the
#: scheduler's request to stop (0, a clean stop); Ctrl-C is the shell's convention 128 + SIGINT.
STOP_EXIT_STATUS = {signal.SIGTERM: 0, signal.SIGINT: 130}


def resume_command(args: Sequence[str]) -> str:
    """The command that resumes a stopped ``wdlab ARGS``: ``--ckpt_path last`` in place of any ``--ckpt_path``
    given (``auto`` stays: it already resumes)."""
    resumed: list[str] = []
    given = False
    arguments = iter(args)
    for arg in arguments:
        if arg == "--ckpt_path" or arg.startswith("--ckpt_path="):
            value = arg.partition("=")[2] if "=" in arg else next(arguments, "")
            resumed += ["--ckpt_path", "auto" if value == "auto" else "last"]
            given = True
        else:
            resumed.append(arg)
    if not given:
        resumed += ["--ckpt_path", "last"]
    return shlex.join(["wdlab", *resumed])


def main(args: Sequence[str] | None) -> int:
    """``wdlab fit|validate|test|predict ARGS`` (``None``: from ``sys.argv``); returns the exit status."""

    def command() -> int:
        given = sys.argv[1:] if args is None else list(args)
        subcommand = next((a for a in given if a in SUBCOMMANDS), None)
        if subcommand is not None and wants_short_help(given):
            print(short_help(subcommand))
            return 0
        arguments = args
        if full_help_args(given) != given:
            arguments = full_help_args(given)
        try:
            build_cli(arguments, run=True)
        except (ArgumentError, TypeError) as error:
            raise ConfigError(explain_parser_error(one_line(error), given)) from None
        except ValueError as error:  # also jsonargparse's instantiation errors, which list every union type
            explained = explain_parser_error(one_line(error), given)
            if explained == one_line(error):
                raise
            raise ConfigError(explained) from None
        except Preempted as stopped:  # last.ckpt holds the state after the last whole step
            if is_rank_zero_process():
                name = "Ctrl-C" if stopped.signum == signal.SIGINT else signal.Signals(stopped.signum).name
                write(f"wdlab: stopped by {name} at epoch {stopped.epoch + 1}, step {stopped.step} "
                      f"(saved {stopped.path}); resume with: {resume_command(given)}")
            return STOP_EXIT_STATUS.get(stopped.signum, 0)
        except SIGTERMException:  # Lightning's own SIGTERM stop (a signal outside the training loop)
            write("wdlab: stopped by SIGTERM before training started; nothing was saved")
        return 0

    return report_errors("wdlab", (DatasetError, ValueError), command)

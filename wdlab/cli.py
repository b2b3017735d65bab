"""The ``wdlab`` command line: ``wdlab fit|validate|test --config FILE`` (LightningCLI) and tools."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import wdlab

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

USAGE = """usage: wdlab [--version] <command> [args]

commands:
  fit          train a model:           wdlab fit --config configs/quickstart.yaml
  validate     evaluate on the validation split (the test set unless val_split > 0)
  test         evaluate on the test set: wdlab test --config X --ckpt_path CKPT
  ensemble     evaluate anytime snapshots and their ensembles:
               wdlab ensemble --config X --snapshots runs/NAME/snapshots
  sweep        a grid of fit runs (lr x weight decay heatmaps; resumable, --jobs N):
               wdlab sweep --config X --grid model.optimizer.lr=0.1,0.05 \\
                 --grid model.optimizer.weight_decay=0,1e-3 --out DIR
  report       heatmaps with coupling numbers from sweeps, learning/anytime curves from runs:
               wdlab report DIR... [--out OUT]
  optimizers   list the optimizer registry: entries, defaults, schedule and decay parameterization

Resume a run: the same command plus --ckpt_path last (or --ckpt_path auto in job scripts that are
re-queued); runs live in runs/<logger name>/ (config.yaml, checkpoints/, snapshots/, TensorBoard events).

'wdlab <command> --help' shows a command's options; every config value can be overridden on the
command line, e.g. --model.optimizer.lr 0.01 --trainer.max_epochs 5 --data.root /data/cifar10.
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


def build_cli(args: Sequence[str] | None, run: bool = True) -> Any:
    """The LightningCLI over ImageClassifier and any datamodule, with wdlab's defaults.

    ``run=True``: ``args`` start with a subcommand (``fit``, ``validate``, ``test``, ``predict``) which is
    executed. ``run=False``: ``args`` are just options (``--config X ...``); the model, datamodule and
    trainer are instantiated and returned unused (``wdlab ensemble`` builds its model this way).
    """
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    from wdlab.training import AnytimeSnapshots, ImageClassifier, ResumableCheckpoint, check_checkpoint
    from wdlab.training.fastpaths import cuda_trainer_defaults
    from wdlab.training.rundir import pin_logger_version, resolve_ckpt_path, run_directory

    class WdlabCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
            parser.add_argument(
                "--test_after_fit",
                type=bool,
                default=True,
                help="after 'fit', evaluate the final model on the test set (logs test/err, test/err5)",
            )
            # Always present: checkpoints/last.ckpt at every epoch end (+ every N steps, + on SIGTERM)
            # and a snapshot at the end of every schedule period.
            parser.add_argument(
                "--sweep",
                type=dict | None,
                default=None,
                help="grid presets read by 'wdlab sweep' ({grid: {key: [values]}, seeds: K}); fit ignores them",
            )
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
            if config is not None and config.get("trainer") is not None:  # bf16-mixed + cudnn benchmark on CUDA
                trainer_config = config["trainer"]
                for key, value in cuda_trainer_defaults(trainer_config).items():
                    trainer_config[key] = value
            if self.subcommand != "fit":  # evaluating into a run directory must not replace its config.yaml
                self.save_config_callback = None

        def _resolve_ckpt_path(self) -> None:
            kwargs = self.config_init[self.subcommand]
            ckpt_path = kwargs.get("ckpt_path")
            resolved = resolve_ckpt_path(self.trainer, self.model, ckpt_path, fitting=self.subcommand == "fit")
            kwargs["ckpt_path"] = resolved
            if self.subcommand == "fit":
                from lightning.pytorch.utilities.rank_zero import rank_zero_info

                start = f"resuming from {resolved}" if resolved else "starting"
                rank_zero_info(f"wdlab: run directory {run_directory(self.trainer)} ({start})")

        def _parse_ckpt_path(self) -> None:
            # LightningCLI reads the checkpoint's hyperparameters here (torch.load): check the file
            # first, so a truncated or corrupt one gives one clear line instead of a traceback.
            subcommand = self.config.get("subcommand")
            ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
            if ckpt_path and ckpt_path not in ("last", "auto"):
                check_checkpoint(ckpt_path)
            super()._parse_ckpt_path()

        before_fit = before_validate = before_test = before_predict = _resolve_ckpt_path

        def after_fit(self) -> None:
            if self.config[self.subcommand].get("test_after_fit", True) and not self.trainer.interrupted:
                self.trainer.test(self.model, datamodule=self.datamodule, verbose=True)

    return WdlabCLI(
        ImageClassifier,
        L.LightningDataModule,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        trainer_defaults={
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "runs", "name": "default", "default_hp_metric": False},
            },
        },
        args=None if args is None else list(args),  # None: LightningCLI reads sys.argv itself
        parser_kwargs={"prog": "wdlab"},
        run=run,
    )


def run_lightning_cli(args: Sequence[str] | None) -> None:
    """``wdlab fit|validate|test|predict``: LightningCLI over ImageClassifier and any datamodule."""
    build_cli(args, run=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "--version":
        print(f"wdlab {wdlab.__version__}")
        return 0
    if args[0] == "ensemble":
        from wdlab.training.ensemble import run_ensemble

        return run_ensemble(args[1:])
    if args[0] == "sweep":
        from wdlab.sweep import main as sweep_main

        return sweep_main(args[1:])
    if args[0] == "report":
        from wdlab.report import main as report_main

        return report_main(args[1:])
    if args[0] == "optimizers":
        print(list_optimizers())
        return 0
    if args[0] in LIGHTNING_COMMANDS:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        from wdlab.data import DatasetError

        try:
            run_lightning_cli(None if argv is None else args)
        except SIGTERMException:  # preempted: last.ckpt has been written (see ResumableCheckpoint)
            print("wdlab: stopped by SIGTERM; resume with the same command plus --ckpt_path last", file=sys.stderr)
            return 0
        except (DatasetError, ValueError) as error:
            if os.environ.get("WDLAB_DEBUG"):
                raise
            print(f"wdlab: error: {error}", file=sys.stderr)
            return 2
        return 0
    print(f"wdlab: unknown command {args[0]!r}; run 'wdlab --help' for the list of commands", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

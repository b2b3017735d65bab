"""The fast paths (issue 6): how every switch resolves, and their CPU behaviour.

On CPU every automatic switch must resolve to "off" (the runs and the exact-resume guarantees stay
as they were); forced on, each must work on CPU too where it can (channels-last, the device-path
loader, the fused kernels, torch.compile). The CUDA-only behaviour is at the end, skipped without a GPU.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from paths import REPO
from resume_helpers import RUN, assert_identical, load_checkpoint, training_state
from torch.utils._python_dispatch import TorchDispatchMode

from wdlab.cli import build_cli, main
from wdlab.data import BuiltinDataModule
from wdlab.data.device import DeviceBatchLoader, ResumableDeviceLoader, fits_on_device, to_device, total_nbytes
from wdlab.data.sampling import EpochShuffleSampler, ResumableDataLoader
from wdlab.data.tensors import BatchTensorDataset, collate_batch
from wdlab.models import PreActResNet
from wdlab.training import fastpaths
from wdlab.training._lightning import logs_this_step
from wdlab.training.fastpaths import (
    check_channels_last_on_cpu,
    compile_options,
    cuda_trainer_defaults,
    resolve_channels_last,
    resolve_fused,
)

pytestmark = pytest.mark.trains

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# A tiny run: 96 training images in batches of 32 (3 steps per epoch), PreActResNet(8, 4).
TINY = [
    "--model.net", "wdlab.models.PreActResNet", "--model.net.init_args.depth", "8",
    "--model.net.init_args.base_width", "4",
    "--data", "wdlab.data.BuiltinDataModule", "--data.num_train", "96", "--data.num_test", "32",
    "--data.batch_size", "32", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--trainer.logger.init_args.name", "tiny",
    "--model.optimizer.name", "adamw",
]


def _built(*args: str):
    """(trainer, model, datamodule) as ``wdlab fit`` builds them, not yet run."""
    cli = build_cli([*TINY, *args], run=False)
    return cli.trainer, cli.model, cli.datamodule


# --------------------------------------------------------------------------------- resolution
def test_automatic_switches_are_on_for_cuda_and_off_elsewhere():
    for device in ("cpu", torch.device("cpu"), "mps", None):
        assert resolve_channels_last(None, device) is False
    for device in ("mps", None):
        assert resolve_fused(None, device) is None  # "not given": the optimizer's own default
    for device in ("cpu", torch.device("cpu")):  # torch's fused CPU kernels: the fastest step there
        assert resolve_fused(None, device) is True
    for device in ("cuda", torch.device("cuda", 1)):
        assert resolve_channels_last(None, device) is True
        assert resolve_fused(None, device) is True
    for device in ("cpu", "cuda"):  # explicit values win everywhere
        assert resolve_channels_last(True, device) is True and resolve_channels_last(False, device) is False
        assert resolve_fused(True, device) is True and resolve_fused(False, device) is False


def test_compile_options():
    assert compile_options(False) is None and compile_options(None) is None
    assert compile_options(True) == {}
    assert compile_options({"mode": "max-autotune"}) == {"mode": "max-autotune"}
    with pytest.raises(ValueError, match=r"model\.compile"):
        compile_options("yes")  # type: ignore[arg-type]


def test_cuda_trainer_defaults(monkeypatch):
    auto = {"accelerator": "auto", "precision": None, "benchmark": None, "deterministic": None}
    assert cuda_trainer_defaults(auto, cuda_available=False) == {}  # CPU: nothing changes
    assert cuda_trainer_defaults(auto, cuda_available=True, bf16_native=True) == {
        "precision": "bf16-mixed", "benchmark": True}
    assert cuda_trainer_defaults(auto, cuda_available=True, bf16_native=False) == {"benchmark": True}  # V100, T4
    for accelerator in ("gpu", "cuda", None):
        assert cuda_trainer_defaults(auto | {"accelerator": accelerator}, cuda_available=True, bf16_native=True)
    assert cuda_trainer_defaults(auto | {"accelerator": "cpu"}, cuda_available=True, bf16_native=True) == {}
    # what the user gave wins
    given = auto | {"precision": "32-true", "benchmark": False}
    assert cuda_trainer_defaults(given, cuda_available=True, bf16_native=True) == {}
    assert cuda_trainer_defaults(auto | {"deterministic": True}, cuda_available=True, bf16_native=True) == {
        "precision": "bf16-mixed"}
    # fork-based DDP cannot start once CUDA is initialized: the capability is not queried
    monkeypatch.setattr(fastpaths, "_bf16_native", lambda *a: pytest.fail("queried the device"))
    assert cuda_trainer_defaults(auto | {"strategy": "ddp_fork"}, cuda_available=True) == {"benchmark": True}


def test_cli_fills_in_bf16_and_cudnn_benchmark_on_cuda_unless_given(in_tmp, monkeypatch):
    """The WdlabCLI default: precision bf16-mixed + benchmark when the run will use CUDA (simulated here:
    the trainer still runs on CPU, where bf16-mixed autocast works); an explicit --trainer.precision wins."""
    cudnn_benchmark = torch.backends.cudnn.benchmark
    try:
        trainer, _, _ = _built()
        assert trainer.precision == "32-true"  # really on CPU: unchanged
        monkeypatch.setattr(fastpaths.torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(fastpaths, "_bf16_native", lambda *a: True)
        cli = build_cli([*TINY], run=False)
        assert cli.trainer.precision == "bf16-mixed"
        assert cli.config["trainer"]["benchmark"] is True and torch.backends.cudnn.benchmark
        trainer, _, _ = _built("--trainer.precision", "32-true", "--trainer.benchmark", "false")
        assert trainer.precision == "32-true" and not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark


def test_config_yaml_records_the_precision_the_run_used(in_tmp):
    """Left unset on CPU, the precision is Lightning's 32-true, and the run's config.yaml says so (not null)."""
    import yaml

    assert main(["fit", *TINY, "--trainer.max_epochs", "1", "--test_after_fit", "false"]) == 0
    (saved,) = in_tmp.glob("runs/tiny/**/config.yaml")
    assert yaml.safe_load(saved.read_text())["trainer"]["precision"] == "32-true"


def test_print_config_shows_the_switches(in_tmp, capsys):
    import yaml

    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["compile"] is False and config["model"]["fused_optimizer"] is None
    assert config["data"]["init_args"]["on_device"] is None
    assert config["data"]["init_args"]["channels_last"] is True  # the quickstart sets it (faster on CPU too)


# ------------------------------------------------------------------------------ CPU behaviour
class _Probe(Callback):
    """Records what the training step sees: batch layout and device, and the optimizer's kernel flags."""

    def __init__(self) -> None:
        self.layouts: list[bool] = []
        self.loaders: list[type] = []
        self.fused: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        x = batch[0]
        self.layouts.append(x.is_contiguous(memory_format=torch.channels_last))
        self.loaders.append(type(trainer.train_dataloader))
        self.fused.append(trainer.optimizers[0].param_groups[0].get("fused"))


def test_on_cpu_the_automatic_fast_paths_are_off_but_the_fused_optimizer(in_tmp):
    trainer, model, dm = _built("--trainer.max_epochs", "1")
    probe = _Probe()
    trainer.callbacks.append(probe)
    trainer.fit(model, datamodule=dm)
    assert trainer.precision == "32-true" and not torch.backends.cudnn.benchmark
    assert model.uses_channels_last is False and model.uses_fused_optimizer is True
    assert all(p.is_contiguous() for p in model.net.parameters())
    assert probe.layouts == [False] * 3 and probe.fused == [True] * 3
    assert dm.data_on_device is False and probe.loaders == [ResumableDataLoader] * 3
    assert not isinstance(dm.test_dataloader(), DeviceBatchLoader)


def test_forced_channels_last_fused_and_on_device_work_on_cpu(in_tmp):
    # base width 16: narrower strided 1x1 shortcuts are refused on CPU (oneDNN bug, next tests)
    trainer, model, dm = _built("--trainer.max_epochs", "1", "--data.channels_last", "true", "--data.on_device",
                                "true", "--model.fused_optimizer", "true", "--model.optimizer.name", "sgdw",
                                "--model.net.init_args.base_width", "16")
    probe = _Probe()
    trainer.callbacks.append(probe)
    trainer.fit(model, datamodule=dm)
    assert model.uses_channels_last is True and model.uses_fused_optimizer is True
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.net.parameters() if p.ndim == 4)
    assert probe.layouts == [True] * 3 and probe.fused == [True] * 3
    assert dm.data_on_device is True and probe.loaders == [ResumableDeviceLoader] * 3
    assert isinstance(dm.val_dataloader(), DeviceBatchLoader)
    assert math.isfinite(trainer.callback_metrics["train/loss"].item())


def test_channels_last_training_on_cpu_is_refused_where_onednn_breaks():
    """A strided 1x1 convolution with fewer input channels than oneDNN's channel block (8 with AVX2, 16 with
    AVX-512) hangs or crashes its NHWC weight gradient (uxlfoundation/oneDNN#6035): PreActResNet base width 4
    has such a shortcut (4 channels into the second stage)."""
    block = 16 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8
    with pytest.raises(ValueError, match=r"1x1 convolution \S+ has 4 input channels .* --data.channels_last false"):
        check_channels_last_on_cpu(PreActResNet(depth=8, base_width=4), "cpu")
    with pytest.raises(ValueError, match=f"has {block - 1} input channels"):
        check_channels_last_on_cpu(torch.nn.Conv2d(block - 1, 32, 1, stride=2), torch.device("cpu"))
    check_channels_last_on_cpu(torch.nn.Conv2d(block, 32, 1, stride=2), "cpu")  # a full block: fine
    check_channels_last_on_cpu(PreActResNet(depth=8, base_width=16), "cpu")
    check_channels_last_on_cpu(torch.nn.Conv2d(4, 8, 3, stride=2), "cpu")  # 3x3: another kernel, fine
    check_channels_last_on_cpu(torch.nn.Conv2d(4, 8, 1, stride=1), "cpu")  # unit stride: no workspace
    check_channels_last_on_cpu(PreActResNet(depth=8, base_width=4), "cuda")  # cuDNN


def test_wdlab_fit_refuses_channels_last_on_cpu_for_a_narrow_net_in_one_line(tmp_path):
    """Through the real command, in a subprocess: without the check the run would hang or crash there."""
    result = subprocess.run(
        [sys.executable, "-m", "wdlab", "fit", *TINY, "--data.channels_last", "true"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("wdlab: error: data.channels_last true cannot train this net on this CPU"), last
    assert "--data.channels_last false" in last
    assert not (tmp_path / "runs" / "tiny" / "checkpoints").exists()


def test_a_net_in_another_layout_than_its_batches_gets_them_converted(in_tmp):
    """data.channels_last false on a channels-last net (set by hand): the module converts each batch."""
    trainer, model, dm = _built("--trainer.max_epochs", "1", "--data.channels_last", "false")
    probe = _Probe()
    trainer.callbacks.append(probe)
    seen = []
    model.net.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    trainer.fit(model, datamodule=dm)
    assert probe.layouts == [False] * 3 and all(seen)


# ------------------------------------------------------------------------ the device data path
def _host_and_device_train_loaders(n=50, batch=8, world=1, rank=0, holdout=None):
    images = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    labels = torch.arange(n)
    subset = None if holdout is None else torch.arange(holdout, n)  # a validation split's training part
    dataset = BatchTensorDataset(images, labels, subset)
    host = ResumableDataLoader(dataset, sampler=EpochShuffleSampler(dataset, seed=3, num_replicas=world, rank=rank),
                               batch_size=batch, collate_fn=collate_batch)
    dev = ResumableDeviceLoader(dataset, to_device(images, torch.device("cpu")), labels,
                                sampler=EpochShuffleSampler(dataset, seed=3, num_replicas=world, rank=rank),
                                batch_size=batch)
    return host, dev


def _epoch(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return list(loader)


def _same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("holdout", [None, 7])
def test_device_loader_serves_the_same_batches_in_the_same_order(world, holdout):
    for rank in range(world):
        host, dev = _host_and_device_train_loaders(world=world, rank=rank, holdout=holdout)
        assert len(host) == len(dev)
        for epoch in range(3):
            batches = _epoch(dev, epoch)
            _same_batches(_epoch(host, epoch), batches)
            assert batches[-1][0].shape[0] < 8  # the last batch is short, as on the host
        assert host.state_dict() == dev.state_dict()


@pytest.mark.parametrize("stop", [0, 1, 3])
def test_device_loader_resumes_where_either_loader_stopped(stop):
    """Same {"epoch", "batches"} state as the host loader; a state saved by one resumes the other."""
    whole = _epoch(_host_and_device_train_loaders()[0], 2)
    for direction in ("host->device", "device->host"):
        host, dev = _host_and_device_train_loaders()
        first, second = (host, dev) if direction == "host->device" else (dev, host)
        first.sampler.set_epoch(2)
        iterator = iter(first)
        for _ in range(stop):
            next(iterator)
        state = first.state_dict()
        assert state == {"epoch": 2, "batches": stop}
        second.load_state_dict(state)
        rest = _epoch(second, 2)
        _same_batches(whole[stop:], rest)
        assert second.state_dict() == {"epoch": 2, "batches": len(whole)}
        _same_batches(_epoch(second, 3), _epoch(first, 3))  # and the next epoch starts from its beginning


def test_datamodule_device_path_matches_host_path_for_every_split():
    kwargs = {"batch_size": 16, "num_train": 70, "num_test": 40, "val_split": 10, "eval_batch_size": 12}
    host, dev = BuiltinDataModule(on_device=False, **kwargs), BuiltinDataModule(on_device=True, **kwargs)
    for dm in (host, dev):
        dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")), world_size=1,
                                     global_rank=0, training=True)
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        a, b = getattr(host, name)(), getattr(dev, name)()
        assert isinstance(b, DeviceBatchLoader) and not isinstance(a, DeviceBatchLoader)
        assert len(a) == len(b)
        if hasattr(a.sampler, "set_epoch"):
            a.sampler.set_epoch(1)
            b.sampler.set_epoch(1)
        _same_batches(list(a), list(b))
    assert dev.data_on_device is True and host.data_on_device is False
    # the training and validation parts of a split share one device copy of the arrays
    assert dev.train_dataloader().images is dev.val_dataloader().images
    assert isinstance(dev.predict_dataloader(), torch.utils.data.DataLoader)  # predictions: always the host path


def test_device_eval_loader_shards_like_lightnings_distributed_sampler():
    dm = BuiltinDataModule(batch_size=8, num_train=40, num_test=21, on_device=True)
    shards = []
    for rank in range(2):
        dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")), world_size=2,
                                     global_rank=rank)
        loader = dm.test_dataloader()
        expected = list(torch.utils.data.DistributedSampler(dm.test_dataset, num_replicas=2, rank=rank,
                                                            shuffle=False))
        labels = torch.cat([y for _, y in loader])
        assert torch.equal(labels, dm.test_dataset.labels[expected])
        shards.append(labels)
    assert len(shards[0]) == len(shards[1]) == 11  # padded to equal shards, as Lightning does
    # the anytime snapshots evaluate the whole set on every rank
    whole = torch.cat([y for _, y in dm.whole_val_dataloader()])
    assert torch.equal(whole, dm.test_dataset.labels)


def test_automatic_placement_needs_cuda_and_room(monkeypatch):
    import wdlab.data.device as device_module

    def attach(dm, device):
        dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), world_size=1,
                                     global_rank=0)

    dm = BuiltinDataModule(batch_size=8, num_train=40, num_test=20)
    attach(dm, "cpu")
    assert not isinstance(dm.train_dataloader(), DeviceBatchLoader) and dm.data_on_device is False
    assert dm.train_dataloader().pin_memory is False
    # a (pretend) CUDA trainer: on the device if it fits, else pinned host batches
    monkeypatch.setattr(device_module, "to_device", lambda array, device: torch.as_tensor(array))
    for fits in (True, False):
        monkeypatch.setattr(device_module, "fits_on_device", lambda nbytes, device, fits=fits: fits)
        dm = BuiltinDataModule(batch_size=8, num_train=40, num_test=20)
        attach(dm, "cuda")
        loader = dm.train_dataloader()
        assert dm.data_on_device is fits
        assert isinstance(loader, ResumableDeviceLoader) is fits
        if not fits:
            assert loader.pin_memory is True
    # used without a trainer (wdlab ensemble): the host loader
    assert not isinstance(BuiltinDataModule(num_train=40, num_test=20).test_dataloader(), DeviceBatchLoader)


def test_fits_on_device_and_sizes():
    assert fits_on_device(10**15, torch.device("cpu"))  # host memory: nothing to check
    a = torch.zeros(10, 3, dtype=torch.uint8)
    assert total_nbytes([a, a, torch.zeros(4, dtype=torch.int64)]) == 30 + 32  # shared arrays counted once


def test_fit_with_data_on_device_is_bit_identical_to_the_host_loader(tmp_path):
    """The resume tests' run (Shake-Shake, augmentation, adamwr with a restart), once per data path."""
    for path in ("host", "device"):
        assert main([*RUN, "--trainer.logger.init_args.save_dir", str(tmp_path / path / "runs"),
                     "--data.init_args.on_device", str(path == "device").lower()]) == 0
    ckpts = [load_checkpoint(tmp_path / p / "runs" / "quickstart" / "checkpoints" / "last.ckpt")
             for p in ("host", "device")]
    assert_identical(training_state(ckpts[0]), training_state(ckpts[1]))


def test_sigterm_and_resume_on_the_device_path_is_bit_identical(tmp_path):
    """Stopped mid-epoch after the restart on the device path, resumed on the device path: the same
    final state as an uninterrupted run on the host path."""
    def fit(where, *extra):
        return main([*RUN, "--trainer.logger.init_args.save_dir", str(tmp_path / where / "runs"), *extra])

    assert fit("host") == 0
    device = ("--data.init_args.on_device", "true")
    assert fit("device", *device, "--trainer.callbacks+=resume_helpers.SigtermAtStep",
               "--trainer.callbacks.step=6") == 0
    last = tmp_path / "device" / "runs" / "quickstart" / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == 6
    assert fit("device", *device, "--ckpt_path", "last") == 0
    host = tmp_path / "host" / "runs" / "quickstart" / "checkpoints" / "last.ckpt"
    assert_identical(training_state(load_checkpoint(host)), training_state(load_checkpoint(last)))


# --------------------------------------------------------------------- no host sync per step
_SYNCING = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


class _CountReadBacks(Callback):
    """Counts tensor-to-Python conversions (what forces a host sync on a GPU) inside each training batch."""

    def __init__(self) -> None:
        self.per_step: list[int] = []
        self._count = 0
        self._originals: dict = {}

    def _counting(self, name):
        original = self._originals[name]

        def wrapper(tensor, *args, **kwargs):
            self._count += 1
            return original(tensor, *args, **kwargs)

        return wrapper

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._count = 0
        for name in _SYNCING:
            self._originals[name] = getattr(torch.Tensor, name)
            setattr(torch.Tensor, name, self._counting(name))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        for name, original in self._originals.items():
            setattr(torch.Tensor, name, original)
        self.per_step.append(self._count)


def test_training_steps_read_nothing_back_between_logging_steps(in_tmp):
    """Between the steps Lightning logs (log_every_n_steps), a training step converts no tensor to a
    Python value: on a GPU it would block the host until the queue drains, and the GPU would idle while the
    host issues the next step (the per-step read-back that slowed Lightning #7093 down). With the
    fused optimizer, as on CUDA (the per-tensor CPU kernel reads its host-side step counters back)."""
    trainer, model, dm = _built("--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "4",
                                "--model.optimizer.name", "adamwr", "--model.optimizer.t0_epochs", "1",
                                "--model.fused_optimizer", "true")
    counter = _CountReadBacks()
    trainer.callbacks.append(counter)
    try:
        trainer.fit(model, datamodule=dm)
    finally:
        for name, original in counter._originals.items():
            setattr(torch.Tensor, name, original)
    assert len(counter.per_step) == 6
    # Excepted: global step 2, the end of the first restart period, where the anytime snapshot is evaluated
    # (and read back once); Lightning's own logging (every 4th step) happens after on_train_batch_end.
    quiet = [n for step, n in enumerate(counter.per_step) if step != 2]
    assert quiet == [0] * 5, counter.per_step
    assert counter.per_step[2] >= 1, counter.per_step  # (the snapshot really was evaluated in that window)


#: aten ops whose result size or value depends on tensor data: on a GPU each one waits for the queue.
_DATA_DEPENDENT = ("_local_scalar_dense", "nonzero", "unique", "_unique", "_unique2", "unique_dim",
                   "unique_consecutive", "masked_select", "bincount", "histc", "equal", "is_nonzero")


class _DispatchCounter(TorchDispatchMode):
    """Every aten op under it, by name (``aten.nonzero.default`` -> ``nonzero``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name == "index" and any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
                                   for i in (args[1] if len(args) > 1 else ()) if i is not None):
            name = "index_with_mask"  # boolean-mask indexing: a nonzero inside the kernel
        if name == "copy_" and args[0].device != args[1].device:
            name = "device_to_host_copy" if args[0].device.type == "cpu" else "host_to_device_copy"
        self.ops.append(name)
        return func(*args, **(kwargs or {}))


class _OpsPerStep(Callback):
    """The aten ops of each training batch (hooks included), and whether Lightning logs that step."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, bool, bool, list[str]]] = []  # (step, logs, period end, ops)
        self._mode: _DispatchCounter | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        schedule = trainer.lr_scheduler_configs[0].scheduler.schedule
        self._meta = (trainer.global_step, logs_this_step(trainer), schedule.is_period_end(trainer.global_step))
        self._mode = _DispatchCounter()
        self._mode.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.close()

    def close(self) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self.steps.append((*self._meta, self._mode.ops))
            self._mode = None


def test_training_steps_run_no_data_dependent_op_and_compute_opt_tags_only_when_logged(in_tmp):
    """Every aten op of every training step, seen by a TorchDispatchMode: outside logging steps and period
    ends no op whose result depends on tensor data (``.item()``, ``nonzero``, ``unique``, boolean masks,
    device-to-host copies), and the ``opt/weight_norm`` pass (``_foreach_norm``) only on the steps
    Lightning logs."""
    trainer, model, dm = _built("--trainer.max_epochs", "3", "--trainer.log_every_n_steps", "4",
                                "--model.optimizer.name", "adamwr", "--model.optimizer.t0_epochs", "1",
                                "--model.optimizer.t_mult", "2", "--model.fused_optimizer", "true")
    counter = _OpsPerStep()
    trainer.callbacks.append(counter)
    try:
        trainer.fit(model, datamodule=dm)
    finally:
        counter.close()
    assert [s for s, *_ in counter.steps] == list(range(9))
    logged = [s for s, logs, _, _ in counter.steps if logs]
    period_ends = [s for s, _, end, _ in counter.steps if end]
    assert logged and period_ends == [2, 8], (logged, period_ends)  # restarts at epochs 1 and 3
    for step, logs, end, ops in counter.steps:
        assert "convolution" in ops or "mkldnn_convolution" in ops or "_convolution" in ops, step
        syncing = [op for op in ops if op in _DATA_DEPENDENT or op.endswith(("_with_mask", "_to_host_copy"))]
        if not end:  # a period's last step evaluates the anytime snapshot, which reads its error back once
            assert syncing == [], f"step {step} (logged: {logs}): {syncing}"
        norm_pass = "_foreach_norm" in ops
        assert norm_pass == logs, f"step {step}: opt/weight_norm pass {norm_pass}, logged {logs}"


# ------------------------------------------------------------------------------ torch.compile
class _GraphCounter(Callback):
    def __init__(self) -> None:
        self.graphs: list[int] = []
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])  # the lr this step uses

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        # after the step's forward and backward, before any period-end snapshot evaluates in eval mode
        from torch._dynamo.utils import counters

        self.graphs.append(counters["stats"]["unique_graphs"])


def _compiled_fit(backend_args: list[str], steps_per_epoch_images: str = "96"):
    import torch._dynamo

    torch._dynamo.reset()
    trainer, model, dm = _built("--trainer.max_epochs", "2", "--trainer.limit_val_batches", "0",
                                "--trainer.num_sanity_val_steps", "0", "--test_after_fit", "false",
                                "--data.num_train", steps_per_epoch_images, "--model.net.init_args.base_width", "16",
                                *backend_args)  # width 16: inductor's NHWC convolutions hit oneDNN#6035 below that
    counter = _GraphCounter()
    trainer.callbacks.append(counter)
    trainer.fit(model, datamodule=dm)
    return model, counter


def test_compiled_network_is_not_recompiled_when_the_lr_changes(in_tmp):
    """Cosine schedule: a new lr at every step; the compiled network is traced once (dynamo's counters)."""
    model, counter = _compiled_fit(["--model.compile", "{backend: aot_eager}"])
    assert len(set(counter.lrs)) == len(counter.lrs) == 6  # the lr changed at every step
    assert counter.graphs[0] >= 1 and counter.graphs[-1] == counter.graphs[0], counter.graphs
    assert all(k.startswith("net.") and "_orig_mod" not in k for k in model.state_dict())  # checkpoint keys kept


def test_inductor_compiled_network_trains_on_cpu_without_recompiling(in_tmp):
    """The default backend (inductor, C++ codegen on CPU): same check, and the loss is finite."""
    model, counter = _compiled_fit(["--model.compile", "true"])
    assert len(set(counter.lrs)) == 6
    assert counter.graphs[-1] == counter.graphs[0], counter.graphs
    assert model.trainer.callback_metrics["train/loss"].isfinite()


# ------------------------------------------------------------------------------------- CUDA
@pytest.mark.gpu
@needs_cuda
def test_cuda_defaults_bf16_channels_last_fused_data_on_device(in_tmp):
    cli = build_cli([*TINY, "--trainer.max_epochs", "1", "--trainer.accelerator", "gpu", "--trainer.devices", "1"],
                    run=False)
    probe = _Probe()
    cli.trainer.callbacks.append(probe)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    major, _ = torch.cuda.get_device_capability()
    assert cli.trainer.precision == ("bf16-mixed" if major >= 8 else "32-true")
    assert torch.backends.cudnn.benchmark
    assert cli.model.uses_channels_last and cli.model.uses_fused_optimizer is True
    assert probe.layouts == [True] * 3 and probe.fused == [True] * 3
    assert cli.datamodule.data_on_device is True and probe.loaders == [ResumableDeviceLoader] * 3


@pytest.mark.gpu
@needs_cuda
def test_cuda_device_loader_matches_the_host_loader():
    host, _ = _host_and_device_train_loaders(n=300, batch=32)
    dataset = host.dataset
    dev = ResumableDeviceLoader(dataset, to_device(dataset.images, torch.device("cuda")),
                                to_device(dataset.labels, torch.device("cuda")),
                                sampler=EpochShuffleSampler(dataset, seed=3), batch_size=32)
    for epoch in range(2):
        a, b = _epoch(host, epoch), _epoch(dev, epoch)
        assert all(x.is_cuda and y.is_cuda for x, y in b)
        _same_batches(a, [(x.cpu(), y.cpu()) for x, y in b])


@pytest.mark.gpu
@needs_cuda
def test_cuda_training_steps_do_not_synchronize(in_tmp):
    """torch's sync debug mode turns any host synchronisation inside a non-logging step into an error."""
    class NoSync(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            # Allowed: the first step (lazy init), logging steps, and a period's last step (the anytime
            # snapshot evaluates the model and reads its error back once, in this batch's end hooks).
            step = trainer.global_step
            schedule = trainer.lr_scheduler_configs[0].scheduler.schedule
            if step != 0 and not logs_this_step(trainer) and not schedule.is_period_end(step):
                torch.cuda.set_sync_debug_mode("error")

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            torch.cuda.set_sync_debug_mode("default")

    cli = build_cli([*TINY, "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "4",
                     "--trainer.accelerator", "gpu", "--trainer.devices", "1"], run=False)
    cli.trainer.callbacks.append(NoSync())
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_cuda_fused_sgdw_matches_the_multi_tensor_path(momentum):
    from wdlab.optim import SGDW

    torch.manual_seed(0)
    base = [torch.randn(s, device="cuda") for s in ((64, 3, 3, 3), (64,), (10, 64))]
    runs = []
    for kernel in ({"foreach": True}, {"fused": True}):
        params = [torch.nn.Parameter(t.clone()) for t in base]
        opt = SGDW(params, lr=0.05, momentum=momentum, weight_decay=0.01, **kernel)
        gen = torch.Generator(device="cuda").manual_seed(1)
        for _ in range(10):
            for p in params:
                p.grad = torch.randn(p.shape, device="cuda", generator=gen)
            opt.step()
        runs.append(params)
    for x, y in zip(*runs, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_lightning_module_api_still_accepts_a_plain_trainer(tmp_path):
    """ImageClassifier + a datamodule in plain Python (as benchmarks/throughput.py uses them), on CPU."""
    from wdlab.models import PreActResNet
    from wdlab.training import ImageClassifier

    model = ImageClassifier(PreActResNet(8, 4, num_classes=10), {"name": "sgdw"}, fused_optimizer=True)
    dm = BuiltinDataModule(batch_size=32, num_train=64, num_test=32, on_device=True)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(model, datamodule=dm)
    assert dm.data_on_device and model.uses_fused_optimizer is True


def test_error_rate_matches_torchmetrics_accuracy_without_its_host_syncs():
    """ErrorRate = 1 - MulticlassAccuracy(micro), top-1 and top-5, over several updates."""
    from torchmetrics.classification import MulticlassAccuracy

    from wdlab.training import ErrorRate

    gen = torch.Generator().manual_seed(0)
    for k in (1, 5):
        ours, reference = ErrorRate(10, top_k=k), MulticlassAccuracy(num_classes=10, top_k=k, average="micro")
        for size in (32, 17, 5):
            logits, target = torch.randn(size, 10, generator=gen), torch.randint(0, 10, (size,), generator=gen)
            ours.update(logits, target)
            reference.update(logits, target)
        torch.testing.assert_close(ours.compute(), 1 - reference.compute())
    assert ErrorRate(3, top_k=5).top_k == 3  # top-min(k, classes), as the README says
    with pytest.raises(ValueError, match="logits"):
        ErrorRate(10).update(torch.zeros(4, 7), torch.zeros(4, dtype=torch.int64))

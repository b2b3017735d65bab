"""Third-party optimizer entries: ``wdlab.optim.register``, the ``wdlab.optimizers`` entry-point group, and the
battery they run (``wdlab.testing.check_optimizer``), which must pass for good entries and fail for broken ones.

The entry-point tests install nothing: they write a tiny distribution (``*.dist-info`` with METADATA and
entry_points.txt, plus its module) into a folder and put it on PYTHONPATH of real ``wdlab`` subprocesses.
"""

from __future__ import annotations

import csv
import functools
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from optim_reference import sgd_reference
from paths import TESTS
from sweep_helpers import cell_config

from wdlab.optim import REGISTRY, SGDW, OptimizerSpec, build_optimizer, register, registry, resolve_hyperparameters
from wdlab.optim.store import OptimizerRegistry
from wdlab.testing import CHECKS, check_optimizer

# The third-party package, as its author would write it: a Lion-like optimizer (Chen et al. 2023: the sign of an
# interpolated momentum) with wdlab's decoupled decay, declared with the capability fields of OptimizerSpec.
DEMO_MODULE = '''
"""wdlab_lion_demo: a third-party optimizer package (written by tests/optim/test_register.py)."""
import torch

from wdlab.optim import DecoupledWeightDecayMixin, OptimizerSpec


class Lion(DecoupledWeightDecayMixin, torch.optim.Optimizer):
    """theta_t = (1 - decay_t) * theta_{t-1} - lr_t * sign(beta1 * m + (1 - beta1) * g), then
    m <- beta2 * m + (1 - beta2) * g."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, decay_scaling="schedule"):
        self._init_decoupled(decay_scaling)  # the mixin checks lr and weight_decay of every group
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            decay = self.decay_coefficient(group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                update = (m * beta1).add_(p.grad, alpha=1 - beta1).sign_()
                p.mul_(1 - decay).add_(update, alpha=-group["lr"])
                m.mul_(beta2).add_(p.grad, alpha=1 - beta2)
        return loss


DEFAULTS = {"lr": 3e-4, "betas": (0.9, 0.99), "weight_decay": 1e-2, "decay_scaling": "schedule", "schedule": "cosine",
            "eta_min": 0.0, "warmup_epochs": 0.0}
LION = OptimizerSpec("lion", Lion, decoupled=True, hyperparameters=("betas",), defaults=DEFAULTS,
                     description="Lion: sign of the interpolated momentum, decoupled weight decay")


def lion_corrected():
    """An entry point may name a function returning the spec."""
    return OptimizerSpec("lionc", Lion, True, ("betas",), {**DEFAULTS, "decay_scaling": "corrected"},
                         "Lion with corrected decay eta_t^2 * lambda")
'''

# A Lightning callback the fit subprocess loads, to show which optimizer class really trained.
PROBE_MODULE = '''
from lightning.pytorch.callbacks import Callback


class PrintOptimizer(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        opt = trainer.optimizers[0]
        print(f"OPTIMIZER {type(opt).__name__} lr={opt.param_groups[0]['lr']:.6g} "
              f"decay_scaling={opt.param_groups[0].get('decay_scaling')}", flush=True)
'''

DEMO_ENTRY_POINTS = """\
[wdlab.optimizers]
lion = wdlab_lion_demo:LION
lionc = wdlab_lion_demo:lion_corrected
"""
# A second distribution whose entry points are broken: one module does not exist, one gives a misnamed entry.
BROKEN_ENTRY_POINTS = """\
[wdlab.optimizers]
ghost = wdlab_missing_module:SPEC
wrongname = wdlab_lion_demo:LION
"""

# A tiny run: test_sweep's cell (PreActResNet-8 of width 4 on 64 built-in images) with the demo's lion.
BASE = cell_config("{name: lion, lr: 0.001}", ", augment: false")


def lion_reference(theta0, grad, steps, *, alpha, eta, lam, beta1=0.9, beta2=0.99):
    """Lion with decoupled decay in float64 NumPy, from the equations (not from the class)."""
    theta = theta0.astype(np.float64).copy()
    m = np.zeros_like(theta)
    trajectory = []
    for t in range(steps):
        g = grad(theta, t)
        e = eta(t)
        theta = theta - e * lam(t) * theta - alpha * e * np.sign(beta1 * m + (1 - beta1) * g)
        m = beta2 * m + (1 - beta2) * g
        trajectory.append(theta.copy())
    return trajectory


def _write_distribution(site: Path, name: str, version: str, entry_points: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder holding the demo package (two entry points) and a broken distribution (two more)."""
    site = tmp_path_factory.mktemp("site")
    (site / "wdlab_lion_demo.py").write_text(DEMO_MODULE)
    (site / "wdlab_lion_probe.py").write_text(PROBE_MODULE)
    _write_distribution(site, "wdlab-lion-demo", "0.1", DEMO_ENTRY_POINTS)
    _write_distribution(site, "wdlab-broken-demo", "1.0", BROKEN_ENTRY_POINTS)
    return site


@pytest.fixture(scope="module")
def demo(site) -> ModuleType:
    """The demo module imported in this process from its file (the folder stays off sys.path here, so this
    process's registry never sees the broken entry points)."""
    spec = importlib.util.spec_from_file_location("wdlab_lion_demo", site / "wdlab_lion_demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["wdlab_lion_demo"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def restore_registry():
    """Every test leaves the default registry as it found it (tests of the registry itself use a fresh one)."""
    with REGISTRY.restoring():
        yield


def wdlab(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(site), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    env.pop("WDLAB_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "wdlab", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


# -- register() ----------------------------------------------------------------------------------------------------
def test_a_registered_entry_is_seen_by_every_lookup(demo, capsys):
    from wdlab.cli import main

    assert "lion" not in REGISTRY
    assert register(demo.LION) is demo.LION
    assert REGISTRY["lion"] is demo.LION and list(REGISTRY)[-1] == "lion"
    assert registry.origin_of("lion") == "register()"
    spec, hp = resolve_hyperparameters("lion", {"lr": 0.01, "betas": [0.9, 0.95], "weight_decay_timescale": 20.0})
    assert spec is demo.LION and hp["betas"] == (0.9, 0.95) and hp["decay_scaling"] == "schedule"
    assert "weight_decay" not in hp
    model = torch.nn.Linear(3, 2)
    opt, _ = build_optimizer("lion", model.parameters(), steps_per_epoch=4, max_epochs=5, batch_size=8, num_train=32)
    assert type(opt) is demo.Lion and opt.param_groups[0]["weight_decay"] == 1e-2
    # fused is a kernel choice: a class without a fused argument keeps its own kernel
    opt, _ = build_optimizer("lion", model.parameters(), steps_per_epoch=4, max_epochs=5, batch_size=8, num_train=32,
                             fused=True)
    assert "fused" not in opt.param_groups[0]
    with pytest.raises(ValueError, match="'momentum' does not apply to optimizer 'lion'"):
        resolve_hyperparameters("lion", {"momentum": 0.9})
    assert main(["optimizers"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "lion" in rows and "register()" in rows["lion"] and "eta_t*lambda" in rows["lion"]
    assert "built-in" in rows["adamw"]


def test_a_registered_entry_is_accepted_by_the_model_config(demo):
    from wdlab.training import ImageClassifier

    register(demo.LION)
    ImageClassifier(torch.nn.Linear(4, 10), optimizer={"name": "lion", "lr": 1e-3})  # validated at construction
    with pytest.raises(ValueError, match="'nesterov' does not apply to optimizer 'lion'"):
        ImageClassifier(torch.nn.Linear(4, 10), optimizer={"name": "lion", "nesterov": True})


def test_replace_only_when_asked_and_never_a_builtin(demo):
    register(demo.LION)
    with pytest.raises(ValueError, match=r"'lion' is already registered \(register\(\)\); pass replace=True"):
        register(demo.LION)
    other = demo.lion_corrected()
    renamed = OptimizerSpec("lion", other.optimizer_class, True, other.hyperparameters, other.defaults, "again")
    assert register(renamed, replace=True) is renamed and REGISTRY["lion"] is renamed
    builtin = OptimizerSpec("adamw", demo.Lion, True, ("betas",), demo.DEFAULTS, "an impostor")
    for replace in (False, True):
        with pytest.raises(ValueError, match="'adamw' is a built-in entry and cannot be replaced"):
            register(builtin, replace=replace)
    assert REGISTRY["adamw"] is registry.BUILTIN["adamw"]


def test_the_defaults_cannot_change_after_registration(demo):
    defaults = dict(demo.DEFAULTS)
    spec = register(OptimizerSpec("lion2", demo.Lion, True, ["betas"], defaults, "Lion, again"))
    defaults["lr"] = -1.0
    assert REGISTRY["lion2"].defaults["lr"] == 3e-4 and spec.hyperparameters == ("betas",)
    with pytest.raises(TypeError):
        spec.defaults["lr"] = 1.0  # type: ignore[index]


class _NoBetas(torch.optim.SGD):
    def __init__(self, params, lr=0.1, weight_decay=0.0):
        super().__init__(params, lr=lr, weight_decay=weight_decay)


class _RefusesToBuild(torch.optim.SGD):
    def __init__(self, params, lr=0.1, weight_decay=0.0):
        raise RuntimeError("needs a GPU")


_L2 = {"lr": 0.1, "weight_decay": 1e-4, "schedule": "cosine"}
_DEC = {**_L2, "decay_scaling": "schedule"}
BAD_SPECS = {
    "not a spec": (lambda demo: "lion", "expected a wdlab.optim.OptimizerSpec, got str"),
    "upper case": (lambda demo: OptimizerSpec("Lion", SGDW, True, (), _DEC, "x"), "'Lion' is not valid: use 1-40"),
    "space": (lambda demo: OptimizerSpec("my lion", SGDW, True, (), _DEC, "x"), "'my lion' is not valid"),
    "digit first": (lambda demo: OptimizerSpec("1lion", SGDW, True, (), _DEC, "x"), "'1lion' is not valid"),
    "too long": (lambda demo: OptimizerSpec("l" * 41, SGDW, True, (), _DEC, "x"), "is not valid"),
    "not an optimizer": (lambda demo: OptimizerSpec("lin", torch.nn.Linear, True, (), _DEC, "x"),
                         "optimizer_class must be a torch.optim.Optimizer subclass"),
    "decoupled not bool": (lambda demo: OptimizerSpec("sgdx", SGDW, "yes", (), _DEC, "x"),
                           "decoupled must be True"),
    "no description": (lambda demo: OptimizerSpec("sgdx", SGDW, True, (), _DEC), "description must be one"),
    "hyperparameters a string": (lambda demo: OptimizerSpec("sgdx", SGDW, True, "momentum", _DEC, "x"),
                                 "hyperparameters must be a tuple of distinct names"),
    "unknown hyperparameter": (lambda demo: OptimizerSpec("sgdx", SGDW, True, ("rho",), {**_DEC, "rho": 1}, "x"),
                               "hyperparameter 'rho' cannot be an entry's own: configs can set only momentum"),
    "undeclared default": (lambda demo: OptimizerSpec("sgdx", SGDW, True, (), {**_DEC, "momentum": 0.9}, "x"),
                           "default 'momentum' is not declared in hyperparameters"),
    "unknown default": (lambda demo: OptimizerSpec("sgdx", SGDW, True, (), {**_DEC, "rho": 0.9}, "x"),
                        "default 'rho' is not a hyperparameter"),
    "no lr": (lambda demo: OptimizerSpec("sgdx", SGDW, True, (), {k: v for k, v in _DEC.items() if k != "lr"}, "x"),
              "defaults lack lr"),
    "no schedule": (lambda demo: OptimizerSpec("sgdx", SGDW, True, (),
                                               {k: v for k, v in _DEC.items() if k != "schedule"}, "x"),
                    "defaults lack schedule"),
    "no decay_scaling": (lambda demo: OptimizerSpec("sgdx", SGDW, True, (), _L2, "x"), "defaults lack decay_scaling"),
    "no default for a hyperparameter": (lambda demo: OptimizerSpec("sgdx", SGDW, True, ("momentum",), _DEC, "x"),
                                        "defaults lack momentum"),
    "no decay": (lambda demo: OptimizerSpec("sgdx", SGDW, True, (),
                                            {k: v for k, v in _DEC.items() if k != "weight_decay"}, "x"),
                 "exactly one of weight_decay, weight_decay_norm, weight_decay_timescale (the decay "
                 "parameterization), got none"),
    "two decays": (lambda demo: OptimizerSpec("sgdx", SGDW, True, (), {**_DEC, "weight_decay_norm": 0.02}, "x"),
                   "got weight_decay, weight_decay_norm"),
    "decay_scaling on L2": (lambda demo: OptimizerSpec("sgdx", torch.optim.SGD, False, (), _DEC, "x"),
                            "default 'decay_scaling' applies only to decoupled entries"),
    "timescale on L2": (lambda demo: OptimizerSpec("sgdx", torch.optim.SGD, False, (),
                                                   {"lr": 0.1, "weight_decay_timescale": 5.0, "schedule": "cosine"},
                                                   "x"),
                        "default 'weight_decay_timescale' applies only to decoupled entries"),
    "decoupled class without decay_scaling": (lambda demo: OptimizerSpec("sgdx", torch.optim.SGD, True, (), _DEC, "x"),
                                              "is decoupled, but SGD does not take decay_scaling="),
    "class without a declared hyperparameter": (
        lambda demo: OptimizerSpec("sgdx", _NoBetas, False, ("betas",), {**_L2, "betas": (0.9, 0.9)}, "x"),
        "_NoBetas does not take betas="),
    "bad default value": (lambda demo: OptimizerSpec("sgdx", SGDW, True, (), {**_DEC, "lr": -1.0}, "x"),
                          "bad defaults: lr must be a number > 0"),
    "bad default schedule": (lambda demo: OptimizerSpec("sgdx", SGDW, True, (), {**_DEC, "schedule": "cyclic"}, "x"),
                             "bad defaults: schedule must be one of"),
    "warm restarts without t0": (lambda demo: OptimizerSpec("sgdx", SGDW, True, (),
                                                            {**_DEC, "schedule": "warm_restarts"}, "x"),
                                 "SGDW cannot be built with the entry's defaults: ValueError"),
    "class that cannot be built": (lambda demo: OptimizerSpec("sgdx", _RefusesToBuild, False, (), _L2, "x"),
                                   "cannot be built with the entry's defaults: RuntimeError: needs a GPU"),
}


@pytest.mark.parametrize("case", BAD_SPECS)
def test_register_refuses_a_bad_spec_in_one_line(case, demo):
    make, message = BAD_SPECS[case]
    before = list(REGISTRY)
    with pytest.raises(ValueError) as excinfo:
        register(make(demo))
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)
    assert list(REGISTRY) == before


def test_the_builtin_entries_pass_the_spec_checks():
    for spec in registry.BUILTIN.values():
        registry.check_spec(spec)


# -- check_optimizer on third-party entries ---------------------------------------------------------------------------
def test_a_registered_lion_passes_the_battery_against_its_own_reference(demo):
    register(demo.LION)
    check_optimizer("lion", reference=lion_reference, lr=0.01)
    check_optimizer(demo.lion_corrected(), lr=0.01)  # unregistered: checked as register() would, then the battery


class MySGDW(SGDW):
    """A third-party subclass of a wdlab class: nothing to add but the entry."""


def test_a_subclass_entry_passes_the_battery():
    mine = register(OptimizerSpec("my-sgdw", MySGDW, True, ("momentum", "nesterov"),
                                  {"lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay_timescale": 20.0,
                                   "decay_scaling": "schedule", "schedule": "cosine"},
                                  "SGDW under another name, decay as a timescale"))
    check_optimizer(mine, reference=functools.partial(sgd_reference, decoupled=True), lr=0.02)


def test_the_readme_entry_registers_and_passes_the_battery():
    """The README's example as written: torch's Adagrad as an L2 entry (no wdlab code), then its pytest test."""
    text = (TESTS.parent / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- register-example -->\s*```python\n(.*?)```\s*<!-- /register-example -->", text, re.S)
    assert match, "README.md has no ```python block between <!-- register-example --> and <!-- /register-example -->"
    exec(compile(match.group(1), "README.md:register-example", "exec"), {"__name__": "readme_example"})
    assert REGISTRY["adagrad"].optimizer_class is torch.optim.Adagrad
    check_optimizer("adagrad")


# Deliberately broken optimizers: each must fail the battery, with the check that catches it named.
class DecayOffByAFactor(SGDW):
    """Decays 1 % too much per step."""

    def decay_coefficient(self, group):
        return 1.01 * super().decay_coefficient(group)


class ForgetsItsMomentum(SGDW):
    """Its state_dict drops the momentum buffers, so a resumed run restarts its momentum."""

    def state_dict(self):
        state = super().state_dict()
        state["state"] = {}
        return state


class DecaysEveryGroupAlike(SGDW):
    """Ignores each group's own weight_decay (uses the constructor's for all)."""

    def decay_coefficient(self, group):
        return super().decay_coefficient({**group, "weight_decay": self.defaults["weight_decay"]})


class UncheckedSGD(torch.optim.Optimizer):
    """L2 SGD that accepts any lr and weight_decay, negative ones included."""

    def __init__(self, params, lr=0.1, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad + group["weight_decay"] * p, alpha=-group["lr"])


_SGDW_DEFAULTS = {"lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 1.25e-4, "decay_scaling": "schedule",
                  "schedule": "cosine"}
BROKEN = {
    "wrong decay vs the reference": (DecayOffByAFactor, ("reference",), "[reference]: step 0: relative error"),
    "wrong decay with zero gradients": (DecayOffByAFactor, ("zero_gradient",), "[zero_gradient]"),
    "state_dict drops a buffer": (ForgetsItsMomentum, ("round_trip",), "[round_trip]: resumed from a state_dict"),
    "group decay ignored": (DecaysEveryGroupAlike, ("param_groups",), "[param_groups]: step 0: a group with zero "
                                                                      "gradient and weight_decay 0 moved"),
    "bad values accepted": (UncheckedSGD, ("bad_values",), "[bad_values]: UncheckedSGD(lr=-1.0) was accepted"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_check_optimizer_fails_for_a_broken_optimizer(case):
    cls, checks, message = BROKEN[case]
    if cls is UncheckedSGD:
        spec = OptimizerSpec("broken", cls, False, (), _L2, "broken on purpose")
        reference = functools.partial(sgd_reference, decoupled=False, momentum=0.0)
    else:
        spec = OptimizerSpec("broken", cls, True, ("momentum", "nesterov"), _SGDW_DEFAULTS, "broken on purpose")
        reference = functools.partial(sgd_reference, decoupled=True)
    with pytest.raises(AssertionError) as excinfo:
        check_optimizer(spec, reference=reference, lr=0.02, checks=checks)
    assert f"check_optimizer('broken') {message}" in str(excinfo.value)
    with pytest.raises(AssertionError):  # and the whole battery fails too
        check_optimizer(spec, reference=reference, lr=0.02)
    if issubclass(cls, SGDW):  # the sound class passes the same checks: what fails is the breakage, not the setup
        sound = OptimizerSpec("sound", SGDW, True, spec.hyperparameters, spec.defaults, "sound")
        check_optimizer(sound, reference=reference, lr=0.02, checks=checks)


def test_check_optimizer_refuses_what_it_cannot_check(demo):
    with pytest.raises(ValueError, match="unknown check"):
        check_optimizer("adamw", checks=("convergence",))
    with pytest.raises(ValueError, match="takes no fused argument"):
        check_optimizer(demo.LION, fused=True)
    with pytest.raises(ValueError, match="unknown optimizer 'nothere'"):
        check_optimizer("nothere")
    assert set(CHECKS) == {"reference", "low_precision", "round_trip", "zero_gradient", "param_groups", "bad_values"}


# -- entry points ------------------------------------------------------------------------------------------------
def test_entry_point_loading_skips_what_is_broken_and_keeps_the_rest(demo, monkeypatch):
    """A fresh registry, with entry points handed in: a factory, a module that registers itself while it is loaded,
    one name declared twice, a clash with a built-in; each problem is one warning, and asking for it says why."""
    group = registry.ENTRY_POINT_GROUP
    found = [
        importlib.metadata.EntryPoint("lion", "wdlab_lion_demo:LION", group),
        importlib.metadata.EntryPoint("lion", "wdlab_lion_demo:LION", group),  # the same one seen twice: fine
        importlib.metadata.EntryPoint("lionc", "wdlab_lion_demo:lion_corrected", group),
        importlib.metadata.EntryPoint("selfreg", "wdlab_registers_itself:SPEC", group),
        importlib.metadata.EntryPoint("twice", "pkg_a:SPEC", group),
        importlib.metadata.EntryPoint("twice", "pkg_b:SPEC", group),
        importlib.metadata.EntryPoint("adamw", "wdlab_lion_demo:LION", group),
        importlib.metadata.EntryPoint("notspec", "wdlab_lion_demo:DEFAULTS", group),
    ]
    fresh = OptimizerRegistry(registry.BUILTIN, entry_points=lambda group: [ep for ep in found if ep.group == group])
    selfreg = OptimizerSpec("selfreg", demo.Lion, True, ("betas",), demo.DEFAULTS, "self")
    registers_itself = ModuleType("wdlab_registers_itself")  # its SPEC registers itself as the entry point loads it

    def module_attribute(attribute: str) -> OptimizerSpec:
        if attribute != "SPEC":
            raise AttributeError(attribute)
        return fresh.register(selfreg)

    registers_itself.__getattr__ = module_attribute  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "wdlab_registers_itself", registers_itself)
    before = list(REGISTRY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = list(fresh)
    assert names[: len(registry.BUILTIN)] == list(registry.BUILTIN)
    assert {"lion", "lionc", "selfreg"} <= set(names) and "twice" not in names and "notspec" not in names
    assert fresh["lion"] is demo.LION and fresh["adamw"] is registry.BUILTIN["adamw"]
    assert fresh["selfreg"] is selfreg
    assert fresh.origin_of("lion").startswith("entry point") and fresh.origin_of("selfreg").startswith("entry")
    unavailable = fresh.unavailable_entries()
    assert set(unavailable) == {"twice", "adamw", "notspec"}
    assert "several distributions declare entry point 'twice'" in unavailable["twice"]
    assert "it gives an entry named 'lion'" in unavailable["adamw"]
    assert "it gives dict, not an OptimizerSpec" in unavailable["notspec"]
    assert len(caught) == 3 and all("wdlab skipped optimizer" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="optimizer 'twice' is not available: several distributions"):
        fresh.resolve_hyperparameters("twice", {})
    assert list(REGISTRY) == before and "lionc" not in REGISTRY  # the default registry saw none of it


def test_restoring_gives_back_the_registry_as_it_was(demo):
    before = list(REGISTRY)
    with REGISTRY.restoring():
        register(demo.LION)
        assert "lion" in REGISTRY and registry.origin_of("lion") == "register()"
    assert list(REGISTRY) == before and "lion" not in REGISTRY


def test_wdlab_optimizers_lists_entry_points_and_names_the_broken_ones(site, tmp_path):
    done = wdlab(["optimizers"], site, tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert list(rows)[: len(registry.BUILTIN)] == list(registry.BUILTIN)  # the built-ins, untouched, first
    assert all("built-in" in rows[name] for name in registry.BUILTIN)
    assert "entry point wdlab-lion-demo 0.1" in rows["lion"] and "eta_t*lambda" in rows["lion"]
    assert "entry point wdlab-lion-demo 0.1" in rows["lionc"] and "eta_t^2*lambda" in rows["lionc"]
    assert "ghost" not in rows and "wrongname" not in rows
    errors = done.stderr.splitlines()
    assert any("'ghost' is not available" in line and "wdlab-broken-demo 1.0" in line
               and "ModuleNotFoundError: No module named 'wdlab_missing_module'" in line for line in errors), errors
    assert any("'wrongname' is not available" in line and "wdlab-broken-demo 1.0" in line for line in errors)
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr


@pytest.mark.trains
def test_wdlab_fit_trains_with_an_entry_point_optimizer(site, tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)
    fit = ["fit", "--config", "base.yaml", "--trainer.fast_dev_run", "true", "--test_after_fit", "false",
           "--trainer.callbacks+=wdlab_lion_probe.PrintOptimizer"]
    done = wdlab([*fit, "--model.optimizer.name", "lionc"], site, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OPTIMIZER Lion lr=0.001 decay_scaling=corrected" in done.stdout  # the entry point's class trained
    assert "Traceback" not in done.stderr
    # asking for a broken entry point: one line that names the distribution, exit 2, before any training
    broken = wdlab([*fit, "--model.optimizer.name", "ghost"], site, tmp_path)
    assert broken.returncode == 2
    last = broken.stderr.strip().splitlines()[-1]
    assert "optimizer 'ghost' is not available" in last and "wdlab-broken-demo 1.0" in last, broken.stderr
    assert "Traceback" not in broken.stderr and "OPTIMIZER" not in broken.stdout


@pytest.mark.trains
@pytest.mark.slow  # one real sweep cell: about a minute on a busy 2-core machine
def test_wdlab_sweep_runs_an_entry_point_optimizer_in_its_grid(site, tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)
    out = tmp_path / "sweep"
    done = wdlab(["sweep", "--config", "base.yaml", "--grid", "model.optimizer.name=lion", "--grid",
                  "model.optimizer.lr=0.001", "--out", str(out)], site, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    with (out / "results.csv").open() as handle:
        (row,) = csv.DictReader(handle)
    assert row["optimizer"] == "lion" and row["state"] == "complete", row

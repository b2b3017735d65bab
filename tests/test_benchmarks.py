"""The benchmark scripts still run (tiny sizes, CPU): they print ratios, they are not timed here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO

pytestmark = pytest.mark.trains


def _run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_throughput_benchmark_runs_and_prints_the_ratio():
    out = _run("throughput.py", "--device", "cpu", "--images", "96", "--batch-size", "32", "--epochs", "2",
               "--warmup-steps", "2", "--repeats", "1", "--no-progress-bar")
    row = next(line for line in out.splitlines() if line.startswith("quickstart"))
    wdlab_ips, plain_ips, ratio = (float(v) for v in row.split()[1:4])
    assert wdlab_ips > 0 and plain_ips > 0 and abs(ratio - wdlab_ips / plain_ips) < 0.01
    assert "torch " in out and "lightning " in out and "precision 32-true" in out


def test_optimizer_step_benchmark_runs_and_reports_bandwidth():
    out = _run("optimizer_step.py", "--device", "cpu", "--width", "4", "--steps", "1", "--rounds", "2")
    assert "measured device copy" in out
    rows = [line for line in out.splitlines() if line.startswith(("AdamW vs", "SGDW vs"))]
    assert len(rows) == 6  # two pairs x default / foreach / fused
    assert all(line.rstrip().endswith("%") for line in rows)


def _gpu_check(out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out)], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=600)


def test_gpu_check_runs_in_cpu_mode_and_says_what_it_skipped(tmp_path):
    done = _gpu_check(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no CUDA device" in done.stderr
    table = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("| ")}
    for name in ("gpu_tests", "throughput", "optimizer_step", "fig2_cell_compiled"):
        assert "skipped: needs CUDA" in table[name]
    cell = table["fig2_cell_cpu"]
    assert "| ok |" in cell and "test/err" in cell
    error = float(cell.split("test/err")[1].split("|")[0])
    assert 0.0 <= error <= 1.0  # the cell really trained and tested
    assert (tmp_path / "summary.md").read_text().strip() == done.stdout.strip()


def test_gpu_check_reports_a_failing_step_and_exits_1(tmp_path):
    done = _gpu_check(tmp_path, WDLAB_GPU_CHECK_CONFIG=str(tmp_path / "missing.yaml"))
    assert done.returncode == 1
    assert "| fig2_cell_cpu | FAILED (exit" in done.stdout

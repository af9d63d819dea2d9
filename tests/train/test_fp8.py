"""`--fp8` of pretrain and finetune_full where it cannot run (CPUs, a precision other than bf16): one line, before
any work, and torchao never imported on that path or by --help; the loss-curve benchmark's CPU smoke test. Training
in float8 is tests/train/test_fp8_training.py."""

import importlib.util
import os
from pathlib import Path

import pytest

from cli_checks import litgpt, one_line_error

ROOT = Path(__file__).resolve().parents[2]
GPUS = "needs a CUDA GPU of compute capability 8.9 or newer (H100, H200, L40, RTX 4090)"


@pytest.fixture
def no_torchao(tmp_path) -> dict:
    """An environment whose `torchao` ends the process when imported, whether or not the real one is installed."""
    tripwire = tmp_path / "tripwire"
    (tripwire / "torchao").mkdir(parents=True)
    (tripwire / "torchao" / "__init__.py").write_text("raise SystemExit('TRIPWIRE: torchao was imported')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tripwire), str(ROOT)]), "CUDA_VISIBLE_DEVICES": ""}


def test_fp8_without_a_gpu_is_one_line_before_any_work(tmp_path, no_torchao):
    out = tmp_path / "out"
    result = litgpt("pretrain", "pythia-14m", "--fp8", "rowwise", "--out_dir", str(out),
                    "--data", "TextFiles", "--data.train_data_path", str(tmp_path / "text"), env=no_torchao)
    line = one_line_error(result, f"--fp8 rowwise {GPUS}; no CUDA GPU is available here")
    assert line.startswith("litgpt pretrain: error: ") and "TRIPWIRE" not in result.stderr + result.stdout
    assert not out.exists()

    # finetune_full checks it before it looks for (or downloads) the base model
    result = litgpt("finetune_full", str(tmp_path / "no-such-model"), "--fp8", "tensorwise", env=no_torchao)
    one_line_error(result, f"litgpt finetune_full: error: --fp8 tensorwise {GPUS}")


@pytest.mark.parametrize("precision", ["16-mixed", "32-true"])
def test_fp8_needs_a_bf16_precision(tmp_path, precision, no_torchao):
    result = litgpt("pretrain", "pythia-14m", "--fp8", "rowwise", "--precision", precision, env=no_torchao)
    one_line_error(result, f"--fp8 rowwise needs --precision bf16-mixed or bf16-true, got --precision {precision}")


def test_fp8_flag_only_on_pretrain_and_finetune_full(no_torchao):
    for command in ("pretrain", "finetune_full"):
        result = litgpt(command, "--help", env=no_torchao)
        assert result.returncode == 0, result.stderr[-2000:]
        text = " ".join(result.stdout.split())  # help wraps lines
        assert "--fp8 {none,rowwise,tensorwise}" in text and "compute capability >= 8.9" in text, command
        assert "pip install torchao" in text, command
    for command in ("finetune_lora", "finetune_adapter", "finetune_adapter_v2"):
        result = litgpt(command, "--help", env=no_torchao)
        assert result.returncode == 0 and "--fp8" not in result.stdout, command
    result = litgpt("--help", env=no_torchao)
    assert result.returncode == 0 and "TRIPWIRE" not in result.stderr, result.stderr[-2000:]


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="float8 emulation needs torchao (pip install torchao)")
def test_loss_curve_benchmark_toy(tmp_path):
    """benchmarks/fp8_loss_curve.py --toy: two real `litgpt pretrain` runs on the CPU in bf16-mixed, the second with
    --fp8 rowwise in torchao's emulation, read back from their logs, compared at steps 2, 3, 4 and plotted (on Zipf
    draws, whose loss falls from the first step)."""
    import json
    import math
    import subprocess
    import sys

    plot = tmp_path / "curve.png"
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    command = [sys.executable, str(ROOT / "benchmarks" / "fp8_loss_curve.py"), "--toy", "--data", "zipf", "--plot", str(plot),
               "--out", str(tmp_path / "runs")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    emitted = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    runs = [e for e in emitted if e["bench"] == "fp8_loss_curve"]
    points = [e for e in emitted if e["bench"] == "fp8_loss_point"]
    assert [(r["run"], r["fp8"]) for r in runs] == [("bf16", "none"), ("fp8", "rowwise")] and all(r["tokens_per_s"] > 0 for r in runs), runs
    assert runs[1]["fp8_layers"] == "fp8: 10 linear layers train in float8 (rowwise)", runs
    assert [p["step"] for p in points] == [2, 3, 4], points
    assert all(math.isfinite(p["loss_fp8"]) and abs(p["rel_diff"]) < 0.01 for p in points), points  # float8 trains as bf16 does
    assert any(p["loss_fp8"] != p["loss_bf16"] for p in points), points  # ... with other numbers: the matmuls were float8
    assert points[-1]["loss_bf16"] < points[0]["loss_bf16"], points
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

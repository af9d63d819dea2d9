"""When torch.compile cannot compile the model (no C compiler for Triton, a GPU Triton does not support), training
goes on eagerly with a one-line warning instead of failing: the same losses as `--compile false`. The compiler's
failure is made here by replacing inductor's entry point with one that raises, in the command's own process."""

import json
import os
import subprocess
import sys

import pytest
from test_finetune_sigkill import REPO_ROOT, logged

SCRIPT = """
import sys
import torch._inductor.compile_fx as compile_fx

def broken(*args, **kwargs):
    raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")

compile_fx.compile_fx = broken
from litgpt.__main__ import main
main(sys.argv[1:])
"""


def finetune(checkpoint, data, out, *extra):
    args = [
        "finetune_lora", str(checkpoint), "--out_dir", str(out), "--precision", "32-true", "--data", "JSON",
        "--data.json_path", str(data), "--data.prompt_style", "alpaca", "--data.val_split_fraction", "0.25",
        "--data.num_workers", "0", "--train.max_steps", "4", "--train.global_batch_size", "2",
        "--train.micro_batch_size", "1", "--train.lr_warmup_steps", "1", "--train.save_interval", "100",
        "--train.log_interval", "1", "--eval.interval", "2", "--eval.max_iters", "1",
        "--logger_name", "csv", "--lora_r", "4", "--lora_alpha", "8",
        "--optimizer", '{"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.02}}', *extra,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("initial_validation", ["false", "true"])  # the first compiled call: a training step, or validation
def test_a_failing_compiler_falls_back_to_eager_training(tmp_path, tiny_checkpoint, initial_validation):
    records = [{"instruction": f"Say {i}", "input": "", "output": f"{i} {i} {i} {i}"} for i in range(8)]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    validation = ("--eval.initial_validation", initial_validation)
    eager = finetune(tiny_checkpoint, data, tmp_path / "eager", "--compile", "false", *validation)
    assert eager.returncode == 0, eager.stderr[-2000:]
    fallback = finetune(tiny_checkpoint, data, tmp_path / "fallback", "--compile", "true", *validation)
    assert fallback.returncode == 0, fallback.stderr[-2000:]
    warnings = [line for line in fallback.stdout.splitlines() if line.startswith("Warning: compiling the model failed")]
    assert len(warnings) == 1, fallback.stdout[-3000:]
    assert "Failed to find C compiler" in warnings[0] and "--compile false" in warnings[0]
    assert "Warning: compiling" not in eager.stdout
    assert logged(tmp_path / "fallback") == logged(tmp_path / "eager")
    assert (tmp_path / "fallback" / "final" / "lit_model.pth").is_file()

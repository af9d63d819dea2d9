"""When torch.compile cannot compile the model (no C compiler for Triton, a GPU Triton does not support), training
goes on eagerly with a one-line warning instead of failing: the same losses as `--compile false`. The compiler's
failure is made here by replacing inductor's entry point with one that raises, in the command's own process."""

import json

import pytest
from test_finetune_sigkill import finetune, logged

BROKEN_COMPILER = """
import torch._inductor.compile_fx as compile_fx

def broken(*args, **kwargs):
    raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")

compile_fx.compile_fx = broken
"""


def run(checkpoint, data, out, *extra):
    """finetune_lora (test_finetune_sigkill's short run) of 4 steps, validating every 2, with a compiler that fails."""
    return finetune(checkpoint, data, out, "--data.val_split_fraction", "0.25", "--train.max_steps", "4",
                    "--eval.interval", "2", *extra, preamble=BROKEN_COMPILER)


@pytest.mark.parametrize("initial_validation", ["false", "true"])  # the first compiled call: a training step, or validation
def test_a_failing_compiler_falls_back_to_eager_training(tmp_path, tiny_checkpoint, initial_validation):
    records = [{"instruction": f"Say {i}", "input": "", "output": f"{i} {i} {i} {i}"} for i in range(8)]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    validation = ("--eval.initial_validation", initial_validation)
    eager = run(tiny_checkpoint, data, tmp_path / "eager", "--compile", "false", *validation)
    assert eager.returncode == 0, eager.stderr[-2000:]
    fallback = run(tiny_checkpoint, data, tmp_path / "fallback", "--compile", "true", *validation)
    assert fallback.returncode == 0, fallback.stderr[-2000:]
    warnings = [line for line in fallback.stdout.splitlines() if line.startswith("Warning: compiling the model failed")]
    assert len(warnings) == 1, fallback.stdout[-3000:]
    assert "Failed to find C compiler" in warnings[0] and "--compile false" in warnings[0]
    assert "Warning: compiling" not in eager.stdout
    assert logged(tmp_path / "fallback") == logged(tmp_path / "eager")
    assert (tmp_path / "fallback" / "final" / "lit_model.pth").is_file()

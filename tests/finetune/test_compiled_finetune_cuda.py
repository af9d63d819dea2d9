"""Compiled finetuning on CUDA learns as the eager one does (CUDA only; skipped elsewhere).

On an H200 (eleventh session), `litgpt finetune_lora --compile true` under bf16-mixed kept its loss at the first
value while the eager run's fell. The cause was in the fused loss (`litgpt.loss`): torch 2.11's dynamo, tracing it,
gave zeros for every gradient (test_loss.py holds the CPU test). These tests check the model alone (one step's LoRA
gradients, eager against compiled, under autocast), then each finetuning command (the losses of a few steps).
"""

import json
import os
import subprocess
import sys
from pathlib import Path


import pytest
import torch
from test_finetune_sigkill import logged

from litgpt.config import Config
from litgpt.lora import add_lora, mark_only_lora_as_trainable
from litgpt.model import GPT

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="compiled finetuning on CUDA: needs a CUDA GPU")


def lora_grads(compiled: bool, dtype: torch.dtype) -> dict:
    torch.manual_seed(0)
    config = Config(block_size=64, n_layer=2, n_embd=64, n_head=4, n_query_groups=2, vocab_size=256, padding_multiple=64,
                    norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=128, bias=False)
    model = add_lora(GPT(config), r=8, alpha=16, dropout=0.0, query=True, value=True).cuda()
    mark_only_lora_as_trainable(model)
    with torch.no_grad():  # B nonzero, so that A gets a gradient too
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.02)
    x = torch.randint(0, 256, (2, 64), device="cuda")
    call = torch.compile(model) if compiled else model
    with torch.autocast("cuda", dtype=dtype):
        loss = call(x[:, :-1], targets=x[:, 1:])
    loss.backward()
    return {name: p.grad.float().clone() for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_compiled_lora_gradients_equal_eager_under_autocast(dtype):
    eager, compiled = lora_grads(False, dtype), lora_grads(True, dtype)
    assert eager.keys() == compiled.keys() and eager
    for name in eager:
        assert compiled[name].abs().max() > 0, f"{name}: no gradient when compiled"
        torch.testing.assert_close(compiled[name], eager[name], rtol=0.05, atol=1e-3, msg=name)


REPO_ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {  # flags and learning rate: the adapters' zero-initialised gates want a larger one to move in 8 steps
    "finetune_lora": (["--lora_r", "4", "--lora_alpha", "8"], 0.02), "finetune_adapter": ([], 0.3), "finetune_adapter_v2": ([], 0.3),
    "finetune_full": ([], 0.002),
}


def finetune(command: str, checkpoint: Path, data: Path, out: Path, compile: str) -> subprocess.CompletedProcess:
    args = [
        command, str(checkpoint), "--out_dir", str(out), "--precision", "bf16-mixed", "--data", "JSON",
        "--data.json_path", str(data), "--data.prompt_style", "alpaca", "--data.val_split_fraction", "0.25",
        "--data.num_workers", "0", "--train.max_steps", "8", "--train.global_batch_size", "2",
        "--train.micro_batch_size", "1", "--train.lr_warmup_steps", "1", "--train.save_interval", "100",
        "--train.log_interval", "1", "--eval.interval", "100", "--eval.max_iters", "1", "--logger_name", "csv",
        "--optimizer", json.dumps({"class_path": "torch.optim.AdamW", "init_args": {"lr": COMMANDS[command][1]}}), *COMMANDS[command][0],
    ] + ([] if compile == "default" else ["--compile", compile])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "litgpt", *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_finetuning_compiled_by_default_learns_as_eager(tmp_path, tiny_checkpoint, command):
    records = [{"instruction": f"Say {i}", "input": "", "output": f"{i} {i} {i} {i}"} for i in range(8)]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    losses = {}
    for compile in ("false", "default"):
        out = tmp_path / f"compile-{compile}"
        run = finetune(command, tiny_checkpoint, data, out, compile)
        assert run.returncode == 0, run.stderr[-2000:]
        assert ("torch.compile's" in run.stdout) == (compile == "default"), run.stdout[-2000:]  # the fused-kernels line
        losses[compile] = logged(out)
    eager, compiled = losses["false"], losses["default"]
    assert eager[8] < eager[1] - 0.05, eager  # the eager run learns at this learning rate
    for step in eager:
        assert compiled[step] == pytest.approx(eager[step], abs=0.05), (step, eager, compiled)

"""Compiled LoRA finetuning on CUDA learns as the eager one does (CUDA only; skipped elsewhere).

On an H200 (eleventh session), `litgpt finetune_lora --compile true` under bf16-mixed kept its loss at the first
value while the eager run's fell; on CPUs both give the same losses. These tests narrow it down: the model alone
(one step's LoRA gradients, eager against compiled, under autocast), then the command (losses of a few steps).
"""

import json

import pytest
import torch
from test_finetune_sigkill import finetune, logged

from litgpt.config import Config
from litgpt.lora import add_lora, mark_only_lora_as_trainable
from litgpt.model import GPT

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="compiled LoRA on CUDA: needs a CUDA GPU")


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


def test_finetune_lora_compiled_learns_as_eager(tmp_path, tiny_checkpoint):
    records = [{"instruction": f"Say {i}", "input": "", "output": f"{i} {i} {i} {i}"} for i in range(8)]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    losses = {}
    for compile in ("false", "true"):
        out = tmp_path / f"compile-{compile}"
        run = finetune(tiny_checkpoint, data, out, "--data.val_split_fraction", "0.25", "--precision", "bf16-mixed", "--compile", compile)
        assert run.returncode == 0, run.stderr[-2000:]
        losses[compile] = logged(out)
    eager, compiled = losses["false"], losses["true"]
    assert eager[8] < eager[1] - 0.05  # the eager run learns at this learning rate
    for step in eager:
        assert compiled[step] == pytest.approx(eager[step], abs=0.05), (step, eager, compiled)

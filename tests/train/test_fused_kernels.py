"""The fused training kernels (litgpt/train/fused.py) on CPU: the CPU path never touches liger-kernel, and liger's
RoPE kernel, run by Triton's interpreter, gives the model's own losses and gradients (the CUDA checks of every
kernel, eager and compiled, are in test_fused_kernels_cuda.py)."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from litgpt.config import Config
from litgpt.model import GPT, LLaMAMLP, RMSNorm, RoPE
from litgpt.train import fused
from train_helpers import run_subprocess, tiny_spec

ROOT = Path(__file__).parents[2]

# records every attempt to find or import liger_kernel (an import that fails because it is not installed counts too)
TRIPWIRE = """
import sys
attempts = []

class Tripwire:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "liger_kernel":
            attempts.append(name)
        return None

sys.meta_path.insert(0, Tripwire())
"""


def test_training_on_the_cpu_never_looks_for_liger_kernel(tmp_path, text_dir):
    runner = tmp_path / "runner.py"
    runner.write_text(TRIPWIRE + textwrap.dedent(f"""
        import json
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from train_helpers import run_in_process
        run_in_process(json.loads(sys.argv[1]))
        print("liger attempts:", attempts)
    """))
    result = run_subprocess(tiny_spec(tmp_path / "out", text_dir, max_steps=2), runner=runner)
    assert "liger attempts: []" in result.stdout
    assert "Fused kernels" not in result.stdout  # the start-up line is CUDA's


def tiny(**overrides) -> GPT:
    torch.manual_seed(0)
    config = dict(name="tiny", block_size=32, vocab_size=64, padded_vocab_size=64, n_layer=2, n_head=4, n_query_groups=2,
                  n_embd=32, rotary_percentage=1.0, parallel_residual=False, bias=False, norm_class_name="RMSNorm",
                  mlp_class_name="LLaMAMLP", intermediate_size=48)
    return GPT(Config(**{**config, **overrides}))


def test_use_fused_kernels_changes_nothing_on_the_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv(fused.ENV, raising=False)
    model = tiny()
    before = [(name, type(module)) for name, module in model.named_modules()]
    assert fused.use_fused_kernels(model, torch.device("cpu")) == []
    assert [(name, type(module)) for name, module in model.named_modules()] == before
    assert {RMSNorm, LLaMAMLP, RoPE} <= {kind for _, kind in before}


def test_the_switch_takes_0_1_or_kernel_names(monkeypatch):
    for value, expected in (("0", []), ("1", list(fused.KERNELS)), ("", list(fused.KERNELS)), ("rope, swiglu", ["rope", "swiglu"])):
        monkeypatch.setenv(fused.ENV, value)
        assert fused.requested() == expected
    monkeypatch.setenv(fused.ENV, "0")
    assert fused.describe([]) == "Fused kernels: none (LITGPT_FUSED_KERNELS=0)"
    # a compiled model is never fused, even when asked: under dynamo liger's kernels gave wrong gradients on the H200
    monkeypatch.delenv(fused.ENV)
    assert fused.requested(compiling=True) == [] and fused.requested() == list(fused.KERNELS)
    message = "Fused kernels: torch.compile's (liger-kernel's are used only without compiling: --compile false)"
    assert fused.describe([], compiling=True) == message
    for value in ("1", "rms_norm"):
        monkeypatch.setenv(fused.ENV, value)
        assert fused.requested(compiling=True) == [] and fused.describe([], compiling=True) == message
    monkeypatch.setenv(fused.ENV, "rope,layernorm")
    for compiling in (False, True):
        with pytest.raises(ValueError, match=r"^LITGPT_FUSED_KERNELS=rope,layernorm: unknown kernel layernorm; use 0 \(none\), 1 \(all\)"):
            fused.requested(compiling)


def test_a_liger_kernel_that_does_not_import_is_one_line(tmp_path, monkeypatch):
    broken = tmp_path / "liger_kernel"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('built for another torch')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "liger_kernel", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # what lets the kernels run on CPU tensors, so fusing is tried
    monkeypatch.delenv(fused.ENV, raising=False)
    with pytest.raises(ValueError, match=r"^liger-kernel is installed but does not import \(built for another torch\): "
                                         r"pip install -U liger-kernel, or set LITGPT_FUSED_KERNELS=0"):
        fused.use_fused_kernels(tiny(), torch.device("cpu"))


# Under TRITON_INTERPRET=1 (set before Triton is imported, so in a fresh process) liger's kernels run on CPU tensors,
# in float32 (the interpreter's bfloat16 is wrong in Triton 3.9: bf16 is checked on CUDA). Two gaps of the
# interpreter that a GPU does not have are filled first: float arguments arrive as Python floats, on which liger's
# RMSNorm and SwiGLU kernels call .to(tl.float32), and libdevice's rsqrt, which the RMSNorm kernel imports by name,
# has no interpreted version.
KERNEL_CHECK = """
import copy, json, sys
import numpy as np
import torch
import triton.language as tl
from triton.runtime import interpreter

convert = interpreter._implicit_cvt
def implicit_cvt(arg):
    if isinstance(arg, float):
        return tl.tensor(interpreter.TensorHandle(np.array([arg], dtype=np.float32), tl.float32), tl.float32)
    return convert(arg)
interpreter._implicit_cvt = implicit_cvt
import liger_kernel.ops.rms_norm
liger_kernel.ops.rms_norm.rsqrt = lambda x: 1.0 / tl.sqrt(x)

sys.path.insert(0, {tests!r})
from test_fused_kernels import tiny
from litgpt.train.fused import use_fused_kernels

def losses_and_grads(model, idx, targets, **kwargs):
    loss = model(idx, targets=targets, **kwargs)
    return [loss] + list(torch.autograd.grad(loss, list(model.parameters())))

CONFIGS = {{
    "llama": {{}},
    "gqa 1": {{"n_query_groups": 1}},
    # Gemma 2: (1 + weight) norms; post norms, whose output's gradient is also the residual's; GeGLU
    "gemma": {{"norm_unit_offset": True, "mlp_class_name": "GemmaMLP", "gelu_approximate": "tanh",
               "post_attention_norm": True, "post_mlp_norm": True, "scale_embeddings": True}},
    "partial rotary": {{"rotary_percentage": 0.5}},
    "qk norm": {{"norm_qk": True}},
}}
report = {{}}
for label, overrides in CONFIGS.items():
    plain = tiny(**overrides)
    model = copy.deepcopy(plain)
    parameters = list(model.parameters())
    report[label] = use_fused_kernels(model, torch.device("cpu"))
    assert list(model.state_dict()) == list(plain.state_dict())
    assert all(a is b for a, b in zip(model.parameters(), parameters))
    idx, targets = torch.randint(0, 64, (2, 12)), torch.randint(0, 64, (2, 12))
    # packed rows: positions restart at each sample's first token, so rows need different cos and sin
    document_ids = torch.tensor([[0] * 5 + [1] * 7, [0] * 3 + [1] * 4 + [2] * 5])
    for kwargs in ({{}}, {{"document_ids": document_ids}}):
        for got, expected in zip(losses_and_grads(model, idx, targets, **kwargs), losses_and_grads(plain, idx, targets, **kwargs)):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    # the sample that validation generates: a prefill and decode steps through the KV cache
    with torch.no_grad():
        for m in (model, plain):
            m.set_kv_cache(batch_size=2)
        prompt = torch.arange(5)
        torch.testing.assert_close(model(idx[:, :5], prompt, input_pos_maxp1=5), plain(idx[:, :5], prompt, input_pos_maxp1=5))
        for position in (5, 6):
            pos = torch.tensor([position])
            torch.testing.assert_close(model(idx[:, position:position + 1], pos), plain(idx[:, position:position + 1], pos))
print("fused:", json.dumps(report))
"""


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is None or importlib.util.find_spec("triton") is None,
                    reason="needs liger-kernel and Triton (pip install liger-kernel -c constraints.txt)")
def test_liger_kernels_give_the_models_losses_and_gradients_under_the_triton_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    env.pop(fused.ENV, None)
    code = KERNEL_CHECK.format(tests=str(Path(__file__).parent))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.split("fused:", 1)[1])
    # GeGLU and a partial rotary embedding keep the model's own code
    assert report == {
        "llama": ["RMSNorm ×5", "SwiGLU ×2", "RoPE ×2"], "gqa 1": ["RMSNorm ×5", "SwiGLU ×2", "RoPE ×2"],
        "gemma": ["RMSNorm ×9", "RoPE ×2"], "partial rotary": ["RMSNorm ×5", "SwiGLU ×2"],
        "qk norm": ["RMSNorm ×9", "SwiGLU ×2", "RoPE ×2"],
    }

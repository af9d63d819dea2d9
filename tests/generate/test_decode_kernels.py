"""The decode step's Triton kernels (`litgpt.engine.decode_kernels`): the block view on CPU (where the ops compute
with torch), and the kernels themselves under Triton's interpreter, against torch."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from litgpt.config import Config
from litgpt.engine.core import compile_blocks, decode_view
from litgpt.engine.decode_kernels import DecodeGatedMLP, DecodeLinear, ResidualBlock
from litgpt.model import GPT, Block, CausalSelfAttention, RMSNorm

ARCHITECTURES = {
    "llama": dict(mlp_class_name="LLaMAMLP", norm_class_name="RMSNorm", parallel_residual=False),
    "qwen2 (qkv bias)": dict(mlp_class_name="LLaMAMLP", norm_class_name="RMSNorm", parallel_residual=False, attn_bias=True),
    "gemma (GeGLU, unit offset)": dict(mlp_class_name="GemmaMLP", norm_class_name="RMSNorm", parallel_residual=False, norm_unit_offset=True),
    "pythia (parallel residual, LayerNorm)": dict(mlp_class_name="GptNeoxMLP", norm_class_name="LayerNorm", parallel_residual=True, bias=True),
}


def tiny(**kwargs) -> GPT:
    torch.manual_seed(0)
    config = Config(n_layer=2, n_embd=64, n_head=4, n_query_groups=2, block_size=32, vocab_size=96, padding_multiple=32,
                    intermediate_size=96, **kwargs)
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_decode_view_gives_the_models_logits(arch):
    model = tiny(**ARCHITECTURES[arch])
    view = decode_view(model)
    compiled = compile_blocks(model, decode=True, backend="aot_eager", dynamic=False)
    prompt = torch.randint(0, 96, (2, 6))
    with torch.inference_mode():
        for forward in (view, decode_view(model, products=False), compiled):  # products=False: many rows' view
            model.set_kv_cache(batch_size=2, max_seq_length=16)
            model(prompt, torch.arange(6), input_pos_maxp1=6)
            got = [forward(torch.tensor([[i], [i + 1]]), torch.tensor([[6 + i], [6 + i]])) for i in range(3)]
            model.set_kv_cache(batch_size=2, max_seq_length=16)
            model(prompt, torch.arange(6), input_pos_maxp1=6)
            for i, logits in enumerate(got):
                torch.testing.assert_close(logits, model(torch.tensor([[i], [i + 1]]), torch.tensor([[6 + i], [6 + i]])))


def test_decode_view_folds_llama_norms_into_the_products_and_leaves_the_model_alone():
    model = tiny(**ARCHITECTURES["llama"])
    block, viewed = model.transformer.h[0], decode_view(model).transformer.h[0]
    assert isinstance(viewed.attn.qkv, DecodeLinear) and viewed.attn.qkv.norm is block.norm_1
    assert isinstance(viewed.mlp, DecodeGatedMLP) and viewed.mlp.norm is block.norm_2
    # an explicit block whose projections add the residual (no norms left), and no method patched onto an instance
    assert type(viewed) is ResidualBlock and not hasattr(viewed, "norm_1") and "attend" not in vars(viewed.attn)
    assert viewed.attn.qkv.linear.weight is block.attn.qkv.weight and viewed.attn.kv_cache is block.attn.kv_cache
    assert isinstance(block.norm_1, RMSNorm) and type(block.attn.qkv) is torch.nn.Linear and "attend" not in vars(block.attn)
    assert type(block) is Block and type(block.attn) is CausalSelfAttention
    # the view's attention is built as what it is (no class swapped onto a copy) and owns no weights of its own
    assert type(viewed.attn).__name__ == "SharedCacheAttention" and "_original" not in vars(viewed.attn)
    assert {id(p) for p in decode_view(model).parameters()} <= {id(p) for p in model.parameters()}
    # a parallel-residual block reads norm_1's output twice: its norms stay where they are
    parallel = decode_view(tiny(**ARCHITECTURES["pythia (parallel residual, LayerNorm)"])).transformer.h[0]
    assert parallel.attn.qkv.norm is None and isinstance(parallel.norm_1, torch.nn.LayerNorm)


def test_decode_view_leaves_adapter_attention_alone():
    from litgpt.adapter import AdapterAttention, add_adapter

    model = add_adapter(tiny(**ARCHITECTURES["llama"]), prompt_length=3, start_layer=1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "gating_factor" in name:
                p.fill_(0.5)  # a live adapter
    view = decode_view(model)
    assert view.transformer.h[1].attn is model.transformer.h[1].attn and type(view.transformer.h[1].attn) is AdapterAttention
    prompt = torch.randint(0, 96, (1, 5))
    with torch.inference_mode():
        model.set_kv_cache(batch_size=1, max_seq_length=8)
        model(prompt, torch.arange(5), input_pos_maxp1=5)
        got = view(torch.tensor([[7]]), torch.tensor([[5]]))
        model.set_kv_cache(batch_size=1, max_seq_length=8)
        model(prompt, torch.arange(5), input_pos_maxp1=5)
        torch.testing.assert_close(got, model(torch.tensor([[7]]), torch.tensor([[5]])))


KERNEL_CHECK = textwrap.dedent("""
    import itertools, torch
    from litgpt.engine import decode_kernels as K

    torch.manual_seed(0)
    # products: uneven shapes (masked tiles) and even ones, each variant, against torch
    for (N, K_, config) in [(37, 100, (4, 32, 1)), (64, 128, (8, 32, 2)), (48, 96, (16, 64, 4))]:
        for pair, bias, norm, offset, residual in itertools.product([False, True], repeat=5):
            if (offset and not norm) or (residual and pair):
                continue
            K.CONFIGS[(N, K_, pair)] = config
            x = torch.randn(1, 1, K_)
            w, w2 = torch.randn(N, K_) / K_**0.5, torch.randn(N, K_) / K_**0.5
            args = (x, w, w2 if pair else None, torch.randn(N) if bias else None, torch.randn(N) if bias and pair else None,
                    torch.rand(K_) + 0.5 if norm else None, 1e-5, offset, torch.randn(1, 1, N) if residual else None)
            torch.testing.assert_close(K.gemv_triton(*args), K.gemv_torch(*args), rtol=1e-5, atol=1e-5)
    # attention: GQA, a cache longer than the attended part, masks shared or per row, a row that attends nowhere
    for B, nh, ng, S, hs, mask_rows, dtype in [(1, 4, 2, 100, 16, 1, torch.float32), (2, 8, 2, 70, 32, 2, torch.float32),
                                              (3, 4, 4, 200, 16, 3, torch.float16)]:
        q = torch.randn(B, nh, 1, hs, dtype=dtype)
        cache_k, cache_v = torch.randn(B, ng, S + 7, hs, dtype=dtype), torch.randn(B, ng, S + 7, hs, dtype=dtype)
        mask = torch.arange(S) <= torch.randint(0, S, (mask_rows, 1, 1, 1))
        if mask_rows == 3:
            mask[1] = False
        args = (q, cache_k[:, :, :S], cache_v[:, :, :S], mask, 0.3)
        tolerance = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(K.decode_attention_triton(*args), K.decode_attention_torch(*args), rtol=tolerance, atol=tolerance)
    print("kernels agree")
""")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton (its interpreter runs the kernels on CPU)")
def test_kernels_match_torch_under_the_triton_interpreter():
    # (bfloat16 is left to the GPU check in benchmarks: the interpreter's bfloat16 tl.dot is wrong in Triton 3.9)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", KERNEL_CHECK], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "kernels agree" in result.stdout


def test_compiled_steps_use_the_decode_kernels_for_one_token_only():
    """The kernels serve one row; batched steps compile the blocks as they are, so inductor still fuses their norms."""
    import torch._dynamo

    from litgpt.engine.core import compiled_decode_step

    graphs = []

    def backend(gm, inputs):
        graphs.append(str(gm.graph))
        return gm.forward

    model = tiny(**ARCHITECTURES["llama"])
    torch._dynamo.reset()
    step = compiled_decode_step(backend=backend)
    prompt = torch.randint(0, 96, (2, 5))
    with torch.inference_mode():
        for rows in (1, 2):
            model.set_kv_cache(batch_size=rows, max_seq_length=8)
            model(prompt[:rows], torch.arange(5), input_pos_maxp1=5)
            tokens, positions = torch.tensor([[7], [9]])[:rows], torch.tensor([[5], [5]])[:rows]
            compiled = len(graphs)
            got = step(model, tokens, positions, 6)
            new = "".join(graphs[compiled:])
            model.set_kv_cache(batch_size=rows, max_seq_length=8)
            model(prompt[:rows], torch.arange(5), input_pos_maxp1=5)
            torch.testing.assert_close(got, model(tokens, positions)[:, -1])
            assert new  # this step compiled its own view
            assert ("litgpt.gemv" in new and "litgpt.decode_attention" in new) == (rows == 1)

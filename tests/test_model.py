"""The GPT model on its own: KV-cache decoding equals the full forward, and the variants behave as specified."""

import math

import pytest
import torch

from litgpt.config import Config
from litgpt.model import GPT, LLaMAMoE, build_rope_cache, deinterleave_qkv

VARIANTS = {
    "neox": dict(),
    "llama-gqa-sequential": dict(
        n_query_groups=2, mlp_class_name="LLaMAMLP", intermediate_size=64, norm_class_name="RMSNorm",
        rotary_percentage=1.0, parallel_residual=False, bias=False,
    ),
    "gemma2-like": dict(
        sliding_window_size=3, sliding_window_indices=[1, 0], n_query_groups=1, attention_logit_softcapping=20.0,
        final_logit_softcapping=30.0, post_attention_norm=True, post_mlp_norm=True, norm_qk=True,
        mlp_class_name="GemmaMLP", intermediate_size=64, scale_embeddings=True, norm_class_name="RMSNorm",
        norm_unit_offset=True, rotary_percentage=1.0, parallel_residual=False,
    ),
    "gemma3-like": dict(
        sliding_window_size=4, rope_local_base_freq=10000, rope_indices=[1, 0], rope_base=1000000,
        rope_adjustments=dict(factor=8.0), norm_qk=True, mlp_class_name="GemmaMLP", intermediate_size=64,
        rotary_percentage=1.0, parallel_residual=False, norm_class_name="RMSNorm",
    ),
    "moe-olmo2-qknorm": dict(
        mlp_class_name="LLaMAMoE", n_expert=4, n_expert_per_token=2, intermediate_size=64,
        moe_intermediate_size=16, n_query_groups=2, norm_qk=True, norm_qk_type="olmo2", norm_class_name="RMSNorm",
    ),
    "llama3-rope": dict(
        rope_adjustments=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_seq_len=8),
        n_query_groups=2, rotary_percentage=1.0,
    ),
    "yarn-rope": dict(
        rope_adjustments=dict(factor=4.0, beta_fast=32, beta_slow=1, original_max_seq_len=8, mscale=1.0,
                              mscale_all_dim=1.0),
        rotary_percentage=0.5, shared_attention_norm=True,
    ),
}


def tiny(**kwargs) -> GPT:
    torch.manual_seed(0)
    sizes = dict(n_layer=2, n_embd=32, n_head=4, block_size=16, vocab_size=100, padding_multiple=64)
    config = Config(**{**sizes, **kwargs})
    return GPT(config).eval()


@pytest.mark.parametrize("variant", VARIANTS)
def test_kv_cache_decoding_equals_full_forward(variant):
    model = tiny(**VARIANTS[variant])
    x = torch.randint(0, 100, (2, 12))
    full = model(x)
    assert full.shape == (2, 12, model.config.padded_vocab_size)

    model.set_kv_cache(batch_size=2)
    pieces = [model(x[:, :5], torch.arange(5))]
    pieces += [model(x[:, t : t + 1], torch.tensor([t]), input_pos_maxp1=t + 1) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=1e-5)

    # per-row positions (B, T), as batched generation with different prompt lengths uses them
    model.set_kv_cache(batch_size=2)
    pieces = [model(x[:, :5], torch.arange(5).expand(2, 5))]
    pieces += [model(x[:, t : t + 1], torch.tensor([[t], [t]])) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["neox", "gemma2-like"])  # gemma2: the final soft-capping applies to the picked rows
def test_logits_at_picks_one_position_per_row(variant):
    model = tiny(**VARIANTS[variant])
    x = torch.randint(0, 100, (3, 9))
    at = torch.tensor([8, 0, 4])
    picked = model(x, logits_at=at)
    assert picked.shape == (3, model.config.padded_vocab_size)
    torch.testing.assert_close(picked, model(x)[torch.arange(3), at])


def test_sliding_window_attends_only_within_the_window():
    model = tiny(sliding_window_size=2, n_layer=1)
    x = torch.randint(0, 100, (1, 8))
    base = model(x)
    changed = x.clone()
    changed[0, 0] = (x[0, 0] + 1) % 100
    out = model(changed)
    # one layer with a window of 2: position t sees t-1 and t only, so position >= 2 ignores token 0
    assert not torch.allclose(out[0, :2], base[0, :2])
    torch.testing.assert_close(out[0, 2:], base[0, 2:])


def test_max_seq_length_below_block_size_shrinks_the_rope_cache():
    model = tiny()
    model.max_seq_length = 8
    assert model.cos.shape[0] == 8
    with pytest.raises(ValueError, match="max_seq_length is 8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="block_size"):
        model.max_seq_length = 17


def test_moe_matches_a_per_token_reference():
    config = Config(n_layer=1, n_embd=16, n_head=2, mlp_class_name="LLaMAMoE", n_expert=4, n_expert_per_token=2,
                    intermediate_size=32)
    torch.manual_seed(0)
    moe = LLaMAMoE(config)
    x = torch.randn(2, 3, 16)
    expected = torch.zeros_like(x)
    for b in range(2):
        for t in range(3):
            logits = moe.gate(x[b, t])
            top, idx = logits.topk(2)
            for weight, e in zip(top.softmax(-1), idx):
                expected[b, t] += weight * moe.experts[int(e)](x[b, t])
    torch.testing.assert_close(moe(x), expected)


def test_llama3_rope_keeps_high_frequencies_and_scales_low_ones():
    plain_cos, _ = build_rope_cache(4, 16, base=10000)
    adj = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_seq_len=64)
    scaled_cos, _ = build_rope_cache(4, 16, base=10000, adjustments=adj)
    torch.testing.assert_close(scaled_cos[:, 0], plain_cos[:, 0])  # highest frequency untouched
    theta_last = 1.0 / 10000 ** (14 / 16)
    torch.testing.assert_close(scaled_cos[3, 7], torch.tensor(math.cos(3 * theta_last / 8)))


def test_legacy_interleaved_qkv_loads_into_the_fused_layout():
    model = tiny(n_query_groups=2)
    c = model.config
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fused = state.pop("transformer.h.0.attn.qkv.weight")
    q, k, v = fused.split((c.n_head * c.head_size, 2 * c.head_size, 2 * c.head_size))
    per_group = c.n_head // c.n_query_groups
    q = q.view(c.n_query_groups, per_group, c.head_size, -1)
    k = k.view(c.n_query_groups, 1, c.head_size, -1)
    v = v.view(c.n_query_groups, 1, c.head_size, -1)
    interleaved = torch.cat((q, k, v), dim=1).reshape(fused.shape)
    torch.testing.assert_close(deinterleave_qkv(interleaved, c), fused)
    state["transformer.h.0.attn.attn.weight"] = interleaved
    fresh = tiny(n_query_groups=2)
    torch.nn.init.zeros_(fresh.transformer.h[0].attn.qkv.weight)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.transformer.h[0].attn.qkv.weight, fused)


def test_gpt_from_name_applies_overrides():
    model_cls = GPT
    with torch.device("meta"):
        model = model_cls.from_name("pythia-14m", n_layer=1)
    assert model.config.n_layer == 1 and len(model.transformer.h) == 1
    assert model.config.n_embd == 128


def test_rope_cache_length_as_litgpt():
    # LitGPT sizes the keys' cache by rope_cache_length; model.rope_cache_length() is the one value that fits
    config = Config(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=32, padded_vocab_size=32, rotary_percentage=0.5)
    model = GPT(config)
    assert model.rope_cache_length() == config.rope_n_elem == 4
    model.set_kv_cache(1, rope_cache_length=model.rope_cache_length())
    assert model.transformer.h[0].attn.kv_cache.k.shape == (1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"rope_cache_length must be model.rope_cache_length\(\) \(4\) for this model, got 8"):
        model.set_kv_cache(1, rope_cache_length=8)

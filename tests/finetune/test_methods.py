"""LoRA, Adapter and Adapter v2 as transforms of the plain model: shapes, key names, start-up identity, merging."""

import pytest
import torch

from litgpt.adapter import add_adapter, adapter_filter, adapter_v2_filter
from litgpt.config import Config
from litgpt.lora import add_lora, lora_filter, merge_lora
from litgpt.model import GPT


def tiny(**kwargs) -> GPT:
    values = dict(
        name="tiny", block_size=32, n_layer=2, n_embd=32, n_head=4, n_query_groups=2, vocab_size=100,
        padding_multiple=64, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=64,
        bias=False, rotary_percentage=1.0, parallel_residual=False,
    )
    config = Config(**{**values, **kwargs})
    torch.manual_seed(0)
    return GPT(config)


def randomise(model, keep=lambda name: False) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not keep(name):
                p.normal_(0, 0.2)


@pytest.mark.parametrize("qkv", [(True, False, True), (True, True, True), (False, True, False)])
def test_lora_keys_shapes_and_merge(qkv):
    model = tiny()
    x = torch.randint(0, 100, (2, 12))
    plain = model(x)
    add_lora(model, r=2, alpha=4, query=qkv[0], key=qkv[1], value=qkv[2], projection=True, mlp=True, head=True)
    assert torch.allclose(model(x), plain, atol=1e-6), "B starts at zero: LoRA starts as the identity"
    sd = model.state_dict()
    n = sum(qkv)
    assert sd["transformer.h.0.attn.qkv.lora_A"].shape == (2 * n, 32)
    sizes = [4 * 8, 2 * 8, 2 * 8]
    assert sd["transformer.h.0.attn.qkv.lora_B"].shape == (sum(s for s, e in zip(sizes, qkv) if e), 2)
    for key in ("transformer.h.0.attn.qkv.linear.weight", "transformer.h.1.mlp.fc_1.lora_A", "lm_head.linear.weight",
                "lm_head.lora_B", "transformer.h.0.attn.proj.lora_A"):
        assert key in sd
    randomise(model, keep=lambda name: not lora_filter(name))
    model.eval()
    with torch.no_grad():
        unmerged = model(x)
    merge_lora(model)
    assert set(model.state_dict()) == set(tiny().state_dict())
    with torch.no_grad():
        assert torch.allclose(model(x), unmerged, atol=1e-5)


def test_lora_mlp_covers_experts():
    model = tiny(n_expert=2, n_expert_per_token=1, moe_intermediate_size=16)
    model.config.mlp_class_name = "LLaMAMoE"
    model = GPT(model.config)
    add_lora(model, r=2, mlp=True)
    keys = model.state_dict()
    assert "transformer.h.0.mlp.experts.1.fc_2.lora_A" in keys and "transformer.h.0.mlp.gate.weight" in keys


@pytest.mark.parametrize("v2", [False, True])
def test_adapter_keys_and_identity_at_start(v2):
    model = tiny(n_layer=3)
    x = torch.randint(0, 100, (2, 12))
    plain = model(x)
    add_adapter(model, prompt_length=5, start_layer=1, v2=v2)
    assert torch.allclose(model(x), plain, atol=1e-6), "zero gates (and unit scales, zero biases) change nothing"
    sd = model.state_dict()
    assert "transformer.h.0.attn.adapter_wte.weight" not in sd
    assert sd["transformer.h.1.attn.adapter_wte.weight"].shape == (5, 32)
    assert sd["transformer.h.2.attn.gating_factor"].shape == (1, 1, 4, 1)
    if v2:
        assert sd["transformer.h.0.attn.qkv.adapter_scale"].shape == (64,)
        assert "transformer.h.0.mlp.proj.adapter_bias" in sd and "lm_head.adapter_bias" in sd
        assert "transformer.h.0.attn.qkv.linear.weight" in sd
        assert adapter_v2_filter("transformer.h.0.norm_1.weight") and not adapter_filter("transformer.h.0.norm_1.weight")
    # opening the gates changes the output, and the gradient reaches the prefix
    with torch.no_grad():
        model.transformer.h[2].attn.gating_factor.fill_(1.0)
    out = model(x)
    assert not torch.allclose(out, plain, atol=1e-4)
    out.sum().backward()
    assert model.transformer.h[2].attn.adapter_wte.weight.grad.abs().sum() > 0


def test_adapter_attention_is_built_and_takes_over_the_layers():
    # add_adapter builds AdapterAttention modules (no class swap of the plain ones) that keep the model's own
    # layers; one built on its own from the config loads the same state dict and computes the same output
    from litgpt.adapter import AdapterAttention
    from litgpt.model import CausalSelfAttention

    model = tiny(n_layer=3)
    qkv = model.transformer.h[1].attn.qkv
    add_adapter(model, prompt_length=3, start_layer=1)
    attn = model.transformer.h[1].attn
    assert type(attn) is AdapterAttention and type(model.transformer.h[0].attn) is CausalSelfAttention
    assert attn.qkv is qkv, "the frozen (possibly quantized) layer is the model's own, not a copy"
    randomise(model)
    fresh = AdapterAttention(model.config, 1, prompt_length=3)
    fresh.load_state_dict(attn.state_dict())
    x, cos, sin = torch.randn(2, 5, 32), model.cos[:5].unsqueeze(0), model.sin[:5].unsqueeze(0)
    assert torch.equal(fresh(x, cos, sin), attn(x, cos, sin))

def test_adapter_with_kv_cache_matches_full_forward():

    model = tiny(n_layer=3)
    add_adapter(model, prompt_length=4, start_layer=1)
    randomise(model, keep=lambda name: not adapter_filter(name))
    model.eval()
    x = torch.randint(0, 100, (1, 10))
    with torch.no_grad():
        full = model(x)
        model.set_kv_cache(1)
        first = model(x[:, :6], input_pos=torch.arange(6))
        rest = model(x[:, 6:], input_pos=torch.arange(6, 10))
    assert torch.allclose(torch.cat((first, rest), 1), full, atol=1e-5)

"""LitGPT's older checkpoints: `attn.attn` holds q, k, v interleaved per query group instead of `attn.qkv` = [q | k | v]."""

import pytest
import torch

from litgpt.config import Config
from litgpt.convert.lit_to_hf import convert_from_litgpt
from litgpt.convert.weights import deinterleave, interleave
from litgpt.model import GPT


def legacy_layout(qkv: torch.Tensor, config: Config) -> torch.Tensor:
    """[q | k | v] -> [q(group 0) k0 v0 | q(group 1) k1 v1 | ...], written out head by head."""
    hs, per_group = config.head_size, config.n_head // config.n_query_groups
    q_rows = config.n_head * hs
    k_rows = config.n_query_groups * hs
    rows = []
    for g in range(config.n_query_groups):
        for h in range(g * per_group, (g + 1) * per_group):
            rows.append(qkv[h * hs : (h + 1) * hs])
        rows.append(qkv[q_rows + g * hs : q_rows + (g + 1) * hs])
        rows.append(qkv[q_rows + k_rows + g * hs : q_rows + k_rows + (g + 1) * hs])
    return torch.cat(rows)


CONFIGS = {
    "gqa": dict(n_head=4, n_query_groups=2, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=48, bias=False, parallel_residual=False),
    "mha-with-bias": dict(n_head=4, n_query_groups=4),
    "mqa": dict(n_head=4, n_query_groups=1, bias=False),
}


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_legacy_checkpoint_loads_with_the_same_logits(kind, tmp_path):
    config = Config(name="legacy", block_size=16, n_layer=2, n_embd=32, vocab_size=64, padding_multiple=64, rotary_percentage=1.0, **CONFIGS[kind])
    torch.manual_seed(0)
    model = GPT(config).eval()
    legacy = {}
    for name, tensor in model.state_dict().items():
        if ".attn.qkv." in name:
            name, tensor = name.replace(".attn.qkv.", ".attn.attn."), legacy_layout(tensor, config)
        legacy[name] = tensor
    assert any(".attn.attn.weight" in k for k in legacy)

    loaded = GPT(config).eval()
    loaded.load_state_dict(legacy)
    idx = torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        assert torch.equal(loaded(idx), model(idx))

    # the converters' helpers are each other's inverse and agree with the layout written out above
    fused = model.transformer.h[0].attn.qkv.weight.detach()
    assert torch.equal(interleave(fused, config), legacy_layout(fused, config))
    assert torch.equal(deinterleave(interleave(fused, config), config), fused)

    # and convert_from_litgpt reads such a checkpoint too
    folder = tmp_path / "legacy"
    folder.mkdir()
    config.save(folder / "model_config.yaml")
    torch.save(legacy, folder / "lit_model.pth")
    convert_from_litgpt(folder, tmp_path / "hf")
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", attn_implementation="eager").eval()
    with torch.no_grad():
        assert (hf(idx).logits - model(idx)).abs().max() < 1e-4

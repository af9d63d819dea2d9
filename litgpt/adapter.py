"""Adapter (LLaMA-Adapter) and Adapter v2 as transforms of the plain GPT.

Adapter: in each block from `start_layer` on, attention also attends to `prompt_length` learned prefix
tokens (`attn.adapter_wte`), through the layer's own qkv projection and without RoPE; that extra attention
output is added after a per-head gate (`attn.gating_factor`, shape (1, 1, n_head, 1)) that starts at zero,
so the model starts out unchanged:

    y = softmax(q kᵀ) v  +  gate ⊙ softmax(q k_prefixᵀ) v_prefix

Adapter v2 adds, on every linear layer, a learned scale and bias on the output (`adapter_scale`,
`adapter_bias`; the frozen layer moves to `<name>.linear`) and also trains the norms. Key names are LitGPT's,
so its `lit_model.pth.adapter` / `lit_model.pth.adapter_v2` files load here.
"""

from typing import Any, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from litgpt.config import Config
from litgpt.lora import WrappedLinear
from litgpt.model import CausalSelfAttention

PROMPT_LENGTH = 10
START_LAYER = 2
ADAPTER_KEYS = ("adapter_wte", "gating_factor")
ADAPTER_V2_KEYS = ADAPTER_KEYS + ("adapter_bias", "adapter_scale", "norm_1", "norm_2", "ln_f")


class AdapterAttention(CausalSelfAttention):
    """Attention with a gated prefix of `prompt_length` learned tokens; only `attend` differs from the plain layer.
    `from_attention` turns a model's attention into one (what `add_adapter` does)."""

    def __init__(self, config: Config, block_idx: int, prompt_length: int = PROMPT_LENGTH,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__(config, block_idx)
        self.adapter_wte = nn.Embedding(prompt_length, config.n_embd, device=device, dtype=dtype)
        self.gating_factor = nn.Parameter(torch.zeros(1, 1, config.n_head, 1, device=device, dtype=dtype))

    @classmethod
    def from_attention(cls, attn: CausalSelfAttention, block_idx: int, prompt_length: int,
                       device: torch.device, dtype: torch.dtype) -> "AdapterAttention":
        """An adapter attention that takes over `attn`'s layers (frozen, wrapped or quantized as they are): built
        on the meta device, so only the new prefix and gate take memory (on `device`, in `dtype`)."""
        with torch.device("meta"):
            adapter = cls(attn.config, block_idx, prompt_length, device=device, dtype=dtype)
        for name, child in attn.named_children():
            setattr(adapter, name, child)
        return adapter.train(attn.training)

    def attend(self, q, k, v, mask: Optional[torch.Tensor]) -> torch.Tensor:
        y = super().attend(q, k, v, mask)  # (B, nh, T, hs)
        c = self.config
        hs, nh, ng = c.head_size, c.n_head, c.n_query_groups
        prefix = self.adapter_wte.weight.unsqueeze(0)  # (1, aT, n_embd)
        aT = prefix.size(1)
        _, ak, av = self.qkv(prefix.to(q.dtype)).split((nh * hs, ng * hs, ng * hs), dim=-1)
        ak = ak.view(1, aT, ng, hs).transpose(1, 2).expand(q.size(0), -1, -1, -1)  # (B, ng, aT, hs)
        av = av.view(1, aT, ng, hs).transpose(1, 2).expand(q.size(0), -1, -1, -1)
        ay = F.scaled_dot_product_attention(q, ak, av, scale=self.scale, enable_gqa=ng != nh)  # (B, nh, T, hs)
        gate = self.gating_factor.transpose(1, 2)  # (1, nh, 1, 1)
        return y + (gate * ay).to(y.dtype)


class AdapterV2Linear(WrappedLinear):
    """`adapter_scale * (linear(x) + adapter_bias)`, starting as the identity transform of the output."""

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear
        device = linear.weight.device
        dtype = linear.weight.dtype if linear.weight.dtype.is_floating_point else torch.float32
        self.adapter_bias = nn.Parameter(torch.zeros(linear.out_features, device=device, dtype=dtype))
        self.adapter_scale = nn.Parameter(torch.ones(linear.out_features, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter_scale * (self.linear(x) + self.adapter_bias)


def add_adapter(model: nn.Module, prompt_length: int = PROMPT_LENGTH, start_layer: int = START_LAYER, v2: bool = False) -> nn.Module:
    """Give the attention of blocks `start_layer`, `start_layer + 1`, ... a gated learned prefix (in place);
    with `v2`, also wrap every linear layer in `AdapterV2Linear`. Returns the model."""
    if prompt_length < 1:
        raise ValueError(f"The adapter prompt length must be at least 1, got {prompt_length}")
    device = model.transformer.wte.weight.device
    dtype = model.transformer.wte.weight.dtype
    if v2:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear or type(child).__module__.startswith("bitsandbytes"):
                    setattr(parent, name, AdapterV2Linear(child))
    for i, block in enumerate(model.transformer.h):
        if i >= start_layer:
            block.attn = AdapterAttention.from_attention(block.attn, i, prompt_length, device, dtype)
    return model


def adapter_filter(name: str, *_: Any) -> bool:
    """Whether a key belongs to the Adapter (what trains, and what `lit_model.pth.adapter` holds)."""
    return any(s in name for s in ADAPTER_KEYS)


def adapter_v2_filter(name: str, *_: Any) -> bool:
    """Whether a key belongs to Adapter v2 (prefix, gates, scales and biases, norms)."""
    return any(s in name for s in ADAPTER_V2_KEYS)


def adapter_settings(state_dict: Dict[str, torch.Tensor]) -> Dict[str, Any]:
    """`add_adapter` arguments that produce the keys and shapes of saved adapter weights."""
    layers = sorted(int(k.split(".")[2]) for k in state_dict if k.endswith("attn.adapter_wte.weight"))
    if not layers:
        raise ValueError("The adapter weights hold no `attn.adapter_wte.weight`")
    prompt_length = state_dict[f"transformer.h.{layers[0]}.attn.adapter_wte.weight"].shape[0]
    v2 = any("adapter_scale" in k or "adapter_bias" in k for k in state_dict)
    return dict(prompt_length=prompt_length, start_layer=layers[0], v2=v2)

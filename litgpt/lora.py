"""LoRA as a transform of the plain GPT: `add_lora` wraps chosen linear layers, `merge_lora` folds them back.

    x ─┬─► linear (frozen W) ─────────────────────────────┐
       └─► dropout ─► lora_A (r·k, in) ─► lora_B (out_k, r) ─► × alpha / r ─► + ─► y

For the fused attention projection `attn.qkv` ([q | k | v] along the output), LoRA may cover any of the three
parts: `lora_A` stacks one (r, in) block per covered part and `lora_B` one (part size, r) block per part, as
in LitGPT, so that its `lit_model.pth.lora` files (keys `...qkv.lora_A`, `...qkv.lora_B`, and the frozen weight
under `...qkv.linear.weight`) load here unchanged.
"""

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class WrappedLinear(nn.Module):
    """Base of layers that wrap a linear layer (`self.linear`) and stand in for it: they show its weight, bias and
    sizes, since callers read e.g. `lm_head.weight.device` / `.dtype` or `proj.out_features`."""

    linear: nn.Module

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    @property
    def bias(self) -> Optional[torch.Tensor]:
        return self.linear.bias

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features


class PlainLinear(WrappedLinear):
    """A linear layer of another kind (e.g. torchao's Float8Linear) computed as a plain one: F.linear over its weight
    and bias as they are at each call (FSDP puts the gathered ones on the wrapped layer just before the forward)."""

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.linear.weight, self.linear.bias)


class LoRALinear(WrappedLinear):
    """A frozen linear layer plus a low-rank update on the output slices `parts` [(offset, size), ...]."""

    def __init__(self, linear: nn.Module, r: int, alpha: float, dropout: float = 0.0, parts: Optional[Sequence[Tuple[int, int]]] = None) -> None:
        super().__init__()
        if r < 1:
            raise ValueError(f"The LoRA rank must be at least 1, got {r}")
        self.linear = linear
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.parts = list(parts) if parts is not None else [(0, linear.out_features)]
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        device, dtype = linear.weight.device, getattr(linear, "compute_dtype", None) or linear.weight.dtype
        if not dtype.is_floating_point:
            dtype = torch.float32
        self.lora_A = nn.Parameter(torch.empty(r * len(self.parts), linear.in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.empty(sum(size for _, size in self.parts), r, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """A as nn.Linear initialises its weight, B zero: the wrapped layer starts out unchanged."""
        if self.lora_A.device.type == "meta":
            return
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        a = F.linear(self.dropout(x).to(self.lora_A.dtype), self.lora_A)  # (B, T, r·k)
        pieces, end = [], 0
        for a_i, b_i, (offset, size) in zip(a.split(self.r, -1), self.lora_B.split([s for _, s in self.parts]), self.parts):
            if offset > end:
                pieces.append(a.new_zeros(*a.shape[:-1], offset - end))
            pieces.append(F.linear(a_i, b_i))  # (B, T, size)
            end = offset + size
        if end < self.out_features:
            pieces.append(a.new_zeros(*a.shape[:-1], self.out_features - end))
        return y + (torch.cat(pieces, -1) * self.scaling).to(y.dtype)

    def linear_parts(self, x: torch.Tensor) -> Optional[Tuple[List[Tuple[torch.Tensor, torch.Tensor]], Optional[torch.Tensor]]]:
        """The output as x @ W.T + (scaled low-rank input) @ B.T + bias, for the fused loss (`litgpt.loss`);
        None unless the layer wraps a plain nn.Linear and covers all of its output."""
        if type(self.linear) is not nn.Linear or self.parts != [(0, self.out_features)]:
            return None
        a = F.linear(self.dropout(x).to(self.lora_A.dtype), self.lora_A) * self.scaling  # (N, r)
        return [(x, self.linear.weight), (a, self.lora_B)], self.linear.bias

    def delta_weight(self) -> torch.Tensor:
        """The (out, in) update this layer adds to `linear.weight`, in float32."""
        delta = torch.zeros(self.out_features, self.in_features, device=self.lora_A.device, dtype=torch.float32)
        blocks_b = self.lora_B.float().split([s for _, s in self.parts])
        for a_i, b_i, (offset, size) in zip(self.lora_A.float().split(self.r), blocks_b, self.parts):
            delta[offset : offset + size] = b_i @ a_i
        return delta * self.scaling


def add_lora(
    model: nn.Module,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    query: bool = True,
    key: bool = False,
    value: bool = True,
    projection: bool = False,
    mlp: bool = False,
    head: bool = False,
) -> nn.Module:
    """Wrap the chosen linear layers of a GPT in `LoRALinear` (in place); returns the model.

    Args:
        r, alpha, dropout: the rank, the scale numerator (updates are scaled by alpha / r) and the input dropout.
        query, key, value: cover these parts of the fused `attn.qkv` projection.
        projection: cover `attn.proj`. mlp: cover the MLP's linear layers (experts' too, not the router).
        head: cover `lm_head`.
    """
    config = model.config
    hs, nh, ng = config.head_size, config.n_head, config.n_query_groups
    qkv_parts, offset = [], 0
    for enabled, size in zip((query, key, value), (nh * hs, ng * hs, ng * hs)):
        if enabled:
            qkv_parts.append((offset, size))
        offset += size

    def wrap(parent: nn.Module, name: str, parts: Optional[List[Tuple[int, int]]] = None) -> None:
        child = getattr(parent, name)
        if isinstance(child, LoRALinear):
            raise ValueError(f"{name} already has LoRA layers")
        setattr(parent, name, LoRALinear(child, r, alpha, dropout, parts))

    for block in model.transformer.h:
        attn = block.attn
        if qkv_parts:
            wrap(attn, "qkv", qkv_parts)
        if projection:
            wrap(attn, "proj")
        if mlp:
            mlps = list(block.mlp.experts) if hasattr(block.mlp, "experts") else [block.mlp]
            for m in mlps:
                for name in ("fc", "fc_1", "fc_2", "proj"):
                    if isinstance(getattr(m, name, None), nn.Module):
                        wrap(m, name)
    if head:
        wrap(model, "lm_head")
    return model


def lora_filter(name: str, *_: Any) -> bool:
    """Whether a parameter or state-dict key belongs to LoRA (what trains, and what `lit_model.pth.lora` holds)."""
    return "lora_" in name


def mark_only_lora_as_trainable(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        param.requires_grad = lora_filter(name)


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its linear layer and put the plain layer back (in place); returns the model,
    whose state dict then has the plain model's keys."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                weight = child.linear.weight
                weight.copy_((weight.float() + child.delta_weight().to(weight.device)).to(weight.dtype))
                setattr(parent, name, child.linear)
    return model


def plain_key(key: str) -> str:
    """The plain model's key for a key of a LoRA-wrapped model (`attn.qkv.linear.weight` → `attn.qkv.weight`)."""
    return key.replace(".linear.", ".")


def lora_settings(state_dict: Dict[str, torch.Tensor], config: Any, hparams: Dict[str, Any]) -> Dict[str, Any]:
    """`add_lora` arguments for LoRA weights: which layers are covered is read from the keys, and which of q/k/v,
    the rank and alpha from a run's hyperparameters (LitGPT's `lora_*` names), with LitGPT's defaults."""
    keys = [k for k in state_dict if k.endswith("lora_A")]
    r = int(hparams.get("lora_r", 8))
    qkv = [k for k in keys if ".attn.qkv." in k or k.endswith("attn.qkv.lora_A")]
    settings = dict(
        r=r,
        alpha=hparams.get("lora_alpha", 16),
        query=bool(hparams.get("lora_query", True)),
        key=bool(hparams.get("lora_key", False)),
        value=bool(hparams.get("lora_value", True)),
        projection=any(".attn.proj." in k for k in keys),
        mlp=any(".mlp." in k for k in keys),
        head=any(k.startswith("lm_head.") for k in keys),
    )
    if not qkv:
        settings.update(query=False, key=False, value=False)
    elif state_dict[qkv[0]].shape[0] != r * sum((settings["query"], settings["key"], settings["value"])):
        raise ValueError(
            f"The LoRA weights of attn.qkv have {state_dict[qkv[0]].shape[0]} rows, which does not match lora_r={r} "
            f"and lora_query/key/value={settings['query']}/{settings['key']}/{settings['value']} of hyperparameters.yaml"
        )
    return settings

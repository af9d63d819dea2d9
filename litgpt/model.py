"""The GPT model: one decoder-only transformer that every architecture in the registry is a configuration of.

    idx (B, T) ─► wte ─► [× embedding scale] ─► Block × n_layer ─► ln_f ─► lm_head ─► [soft-cap] ─► logits

Each Block (sequential residual on the left, parallel residual on the right):

    x ─┬─► norm_1 ─► attn ─► post_attention_norm ─┐     x ─┬─► norm_1 ─► attn ─► post_attention_norm ─┐
       └───────────────────────────────────────── + ─┐     ├─► norm_2 ─► mlp ──► post_mlp_norm ────────┤
         ┌─ norm_2 ◄──────────────────────────────────┘     └─────────────────────────────────────────── +
         └► mlp ─► post_mlp_norm ─► + (residual)

(with `shared_attention_norm`, the parallel MLP reads norm_1's output.) State-dict keys are LitGPT's.
"""

import math
from typing import Any, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from litgpt.config import Config
from litgpt.loss import linear_cross_entropy


class GPT(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=config.lm_head_bias)
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.padded_vocab_size, config.n_embd),
                h=nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
                ln_f=norm(config, config.n_embd),
            )
        )
        self.max_seq_length = config.block_size

    @classmethod
    def from_name(cls, name: str, **kwargs: Any) -> "GPT":
        return cls(Config.from_name(name, **kwargs))

    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        """The longest sequence the model will see; below `block_size` it saves RoPE-cache and KV-cache memory."""
        if value > self.config.block_size:
            raise ValueError(f"Cannot attend to {value} tokens: the context length (block_size) is {self.config.block_size}")
        self._max_seq_length = value
        device = self.cos.device if hasattr(self, "cos") else None
        if not hasattr(self, "cos") or self.cos.size(0) != value:
            for key, tensor in zip(("cos", "sin"), self.rope_cache(device)):
                self.register_buffer(key, tensor, persistent=False)

    def rope_cache(self, device: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of shape (max_seq_length, rope_n_elem), or (..., 2) with a local-attention cache last."""
        c = self.config
        cos, sin = build_rope_cache(self.max_seq_length, c.rope_n_elem, c.rope_base, c.rope_condense_ratio, c.rope_adjustments, device)
        if c.rope_scaling == "longrope":  # the short factors' cache, then the long ones' (see `_longrope`)
            cos_long, sin_long = build_rope_cache(
                self.max_seq_length, c.rope_n_elem, c.rope_base, c.rope_condense_ratio, c.rope_adjustments, device, long_factors=True
            )
            cos, sin = torch.stack((cos, cos_long), -1), torch.stack((sin, sin_long), -1)
        elif c.rope_local_base_freq is not None:
            cos_local, sin_local = build_rope_cache(self.max_seq_length, c.rope_n_elem, c.rope_local_base_freq, c.rope_condense_ratio, None, device)
            cos, sin = torch.stack((cos, cos_local), -1), torch.stack((sin, sin_local), -1)
        return cos, sin

    def reset_parameters(self) -> None:
        """Recompute the RoPE cache (after materialising a model built on the meta device)."""
        self.cos, self.sin = self.rope_cache(self.lm_head.weight.device)

    def forward(
        self,
        idx: torch.Tensor,
        input_pos: Optional[torch.Tensor] = None,
        input_pos_maxp1: Optional[int] = None,
        lm_head_chunk_size: int = 0,
        targets: Optional[torch.Tensor] = None,
        ignore_index: int = -100,
        logits_at: Optional[torch.Tensor] = None,
        document_ids: Optional[torch.Tensor] = None,
    ) -> Union[torch.Tensor, List[torch.Tensor]]:
        """Logits (B, T, padded_vocab_size) for tokens `idx` (B, T), or with `targets` the mean cross-entropy.

        Args:
            input_pos: positions of `idx`, (T,) or (B, T); given, the KV cache is read and written.
            input_pos_maxp1: max(input_pos) + 1 when known, so attention reads only that much of the cache.
            lm_head_chunk_size: when > 0, a list of logit chunks along T (saves memory in training).
            targets: next-token ids (B, T); the loss skips `ignore_index`. Computed from the hidden states in
                blocks, without ever holding the full logits (`litgpt.loss`); this is how training calls the model.
            logits_at: one index along T per row, (B,): only those positions' logits, (B, padded_vocab_size) (a
                prefill needs just each prompt's last one; the full logits of a long prompt can take gigabytes).
            document_ids: (B, T) which packed sample each token belongs to (training on packed rows, no KV cache):
                attention stays within a sample and positions restart at each sample's first token.
        """
        B, T = idx.shape
        if T > self.max_seq_length:
            raise ValueError(f"Cannot forward a sequence of {T} tokens: max_seq_length is {self.max_seq_length}")
        if document_ids is not None:
            if input_pos is not None:
                raise ValueError("document_ids (packed samples) cannot be combined with input_pos (the KV cache)")
            positions, masks = document_masks(document_ids, self.config.sliding_window_size)
            cos, sin = self.cos[positions], self.sin[positions]  # (B, T, n_elem[, 2])
        elif input_pos is None:
            cos, sin = self.cos[:T].unsqueeze(0), self.sin[:T].unsqueeze(0)  # (1, T, n_elem[, 2])
            masks = None
        else:
            cos, sin = self.cos[input_pos], self.sin[input_pos]  # (T | B T, n_elem[, 2])
            if input_pos.dim() == 1:
                cos, sin = cos.unsqueeze(0), sin.unsqueeze(0)
            # T tokens ending at position T - 1 are a prefill from 0: they attend only to each other (causal,
            # flash kernel) while still filling the cache; otherwise they attend over the cache through masks
            masks = None if input_pos_maxp1 == T else self._cache_masks(input_pos, input_pos_maxp1)
        if self.config.rope_scaling == "longrope":  # by the positions, not input_pos_maxp1 (the engine pads that)
            cos, sin = self._longrope(cos, sin, T if input_pos is None else input_pos.max() + 1)

        x = self.transformer.wte(idx)  # (B, T, n_embd)
        if self.config.scale_embeddings:
            x = x * torch.tensor(self.config.n_embd**0.5, dtype=x.dtype)
        rope_indices = self.config.rope_indices
        for i, block in enumerate(self.transformer.h):
            c, s = (cos, sin) if rope_indices is None else (cos[..., rope_indices[i]], sin[..., rope_indices[i]])
            x = block(x, c, s, input_pos, input_pos_maxp1, masks)
        x = self.transformer.ln_f(x)
        if targets is not None:
            return linear_cross_entropy(x.flatten(0, 1), self.lm_head, targets.flatten(), ignore_index, self.config.final_logit_softcapping)
        if logits_at is not None:
            return self._head(x[torch.arange(B, device=x.device), logits_at])
        if lm_head_chunk_size > 0:
            return [self._head(chunk) for chunk in x.split(lm_head_chunk_size, dim=1)]
        return self._head(x)

    def _longrope(self, cos: torch.Tensor, sin: torch.Tensor, seq_len: Union[int, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """LongRoPE's factors for one forward call: the long ones for every position once the call reaches past the
        original context (its largest position + 1 > original_max_seq_len), else the short ones; as transformers does,
        so a KV-cached generation that crosses that length keeps the keys it cached with the short factors."""
        long = seq_len > self.config.rope_adjustments["original_max_seq_len"]
        if isinstance(long, bool):
            return cos[..., int(long)], sin[..., int(long)]
        # a tensor (positions of a decode step): no host sync, so CUDA graphs can replay it
        return torch.where(long, cos[..., 1], cos[..., 0]), torch.where(long, sin[..., 1], sin[..., 0])

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(x)
        if self.config.final_logit_softcapping is not None:
            logits = softcap(logits, self.config.final_logit_softcapping)
        return logits

    def _cache_masks(self, input_pos: torch.Tensor, input_pos_maxp1: Optional[int]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Boolean attention masks (B|1, 1, T, S) over the KV cache: causal, and causal within the sliding window."""
        kv_cache = self.transformer.h[0].attn.kv_cache
        if kv_cache is None:
            raise TypeError("Call `model.set_kv_cache(batch_size)` before passing `input_pos`")
        S = input_pos_maxp1 if input_pos_maxp1 is not None else kv_cache.k.size(2)
        q_pos = input_pos.unsqueeze(-1)  # (T, 1) | (B, T, 1)
        q_pos = (q_pos if q_pos.dim() == 3 else q_pos.unsqueeze(0)).unsqueeze(1)  # (B|1, 1, T, 1)
        k_pos = torch.arange(S, device=input_pos.device)
        causal = k_pos <= q_pos  # (B|1, 1, T, S)
        window = self.config.sliding_window_size
        return causal, None if window is None else causal & (q_pos - k_pos < window)

    def rope_cache_length(self) -> int:
        """The rotated elements of a head (`config.rope_n_elem`), what LitGPT sizes its keys' cache by."""
        return self.config.rope_n_elem

    def set_kv_cache(
        self,
        batch_size: int,
        max_seq_length: Optional[int] = None,
        rope_cache_length: Optional[int] = None,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        """Allocate a KV cache for `batch_size` sequences of up to `max_seq_length` (default: the model's) tokens.

        `rope_cache_length` is LitGPT's: its keys' cache holds `rope_cache_length + head_size - rope_n_elem`
        elements a head, so `model.rope_cache_length()` (or None) is the one value that fits the heads."""
        if rope_cache_length is not None and rope_cache_length != self.rope_cache_length():
            raise ValueError(
                f"rope_cache_length must be model.rope_cache_length() ({self.rope_cache_length()}) for this model, "
                f"got {rope_cache_length}: the keys' cache would not fit the heads"
            )
        max_seq_length = max_seq_length or self.max_seq_length
        if dtype is None:
            dtype = self.lm_head.weight.dtype
        for block in self.transformer.h:
            # by default each cache beside its block (the blocks of a model spread over devices differ)
            at = device or next(block.parameters(), self.lm_head.weight).device
            block.attn.kv_cache = KVCache(batch_size, self.config.n_query_groups, max_seq_length, self.config.head_size, at, dtype)

    def clear_kv_cache(self) -> None:
        for block in self.transformer.h:
            block.attn.kv_cache = None


class Block(nn.Module):
    def __init__(self, config: Config, block_idx: int) -> None:
        super().__init__()
        if not config.parallel_residual and config.shared_attention_norm:
            raise NotImplementedError("A shared attention norm needs a parallel residual")
        self.norm_1 = norm(config, config.n_embd) if config.norm_1 else nn.Identity()
        self.attn = CausalSelfAttention(config, block_idx)
        self.post_attention_norm = norm(config, config.n_embd) if config.post_attention_norm else nn.Identity()
        self.norm_2 = None if config.shared_attention_norm else norm(config, config.n_embd) if config.norm_2 else nn.Identity()
        self.mlp = MLP_CLASSES[config.mlp_class_name](config)
        self.post_mlp_norm = norm(config, config.n_embd) if config.post_mlp_norm else nn.Identity()
        self.parallel_residual = config.parallel_residual

    def forward(self, x, cos, sin, input_pos=None, input_pos_maxp1=None, masks=None) -> torch.Tensor:
        x_normed = self.norm_1(x)
        h = self.post_attention_norm(self.attn(x_normed, cos, sin, input_pos, input_pos_maxp1, masks))
        if self.parallel_residual:
            mlp_in = x_normed if self.norm_2 is None else self.norm_2(x)
            return x + h + self.post_mlp_norm(self.mlp(mlp_in))
        x = x + h
        return x + self.post_mlp_norm(self.mlp(self.norm_2(x)))


class CausalSelfAttention(nn.Module):
    def __init__(self, config: Config, block_idx: int) -> None:
        super().__init__()
        unsupported = [name for name in ("latent_attention", "n_expert_groups", "n_shared_expert", "first_k_dense_replace")
                       if getattr(config, name)] + (["rope_interleave"] if config.rope_interleave else [])
        if unsupported:
            raise NotImplementedError(f"{config.name}: {', '.join(unsupported)} is not supported yet")
        hs, nh, ng = config.head_size, config.n_head, config.n_query_groups
        # one fused projection laid out as [q (nh*hs) | k (ng*hs) | v (ng*hs)]
        self.qkv = nn.Linear(config.n_embd, (nh + 2 * ng) * hs, bias=config.bias or config.attn_bias)
        self.proj = nn.Linear(nh * hs, config.n_embd, bias=config.bias)
        if config.norm_qk:
            olmo2 = config.norm_qk_type == "olmo2"  # normalises the flat projections, not each head
            self.norm_q = norm(config, nh * hs if olmo2 else hs)
            self.norm_k = norm(config, ng * hs if olmo2 else hs)
        self.rope = RoPE(config.rope_n_elem)  # no weights; litgpt/train/fused.py may put a fused kernel here
        self.kv_cache: Optional[KVCache] = None
        self.config = config
        self.sliding_window = (
            config.sliding_window_size if config.sliding_window_size is not None and config.sliding_window_indices[block_idx] else None
        )
        mscale = 1.0
        adj = config.rope_adjustments or {}
        if adj.get("mscale_all_dim") and adj.get("factor"):  # YaRN also rescales attention scores
            mscale = yarn_mscale(adj["factor"], adj["mscale_all_dim"])
        self.scale = mscale**2 / math.sqrt(config.attention_scores_scalar or hs)

    def forward(self, x, cos, sin, input_pos=None, input_pos_maxp1=None, masks=None) -> torch.Tensor:
        return self.proj(self.heads(x, cos, sin, input_pos, input_pos_maxp1, masks))

    def heads(self, x, cos, sin, input_pos=None, input_pos_maxp1=None, masks=None) -> torch.Tensor:
        """The attention's output before its projection: (B, T, n_head * head_size)."""
        c = self.config
        B, T, _ = x.shape
        hs, nh, ng = c.head_size, c.n_head, c.n_query_groups
        q, k, v = self.qkv(x).split((nh * hs, ng * hs, ng * hs), dim=-1)
        if c.norm_qk and c.norm_qk_type == "olmo2":
            q, k = self.norm_q(q), self.norm_k(k)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, ng, hs).transpose(1, 2)  # (B, ng, T, hs)
        v = v.view(B, T, ng, hs).transpose(1, 2)  # (B, ng, T, hs)
        if c.norm_qk and c.norm_qk_type != "olmo2":
            q, k = self.norm_q(q), self.norm_k(k)
        q, k = self.rope(q, k, cos, sin)

        mask = None
        if input_pos is not None:
            if self.kv_cache is None:
                raise TypeError("Call `model.set_kv_cache(batch_size)` before passing `input_pos`")
            cached_k, cached_v = self.kv_cache(input_pos, k, v)
            if masks is not None:  # None: a prefill from position 0 (see GPT.forward)
                k, v = cached_k, cached_v
                if input_pos_maxp1 is not None:
                    k, v = k[:, :, :input_pos_maxp1], v[:, :, :input_pos_maxp1]
                mask = masks[0] if self.sliding_window is None else masks[1]
        elif masks is not None:  # packed samples (see document_masks)
            mask = masks[0] if self.sliding_window is None else masks[1]
        if mask is None and self.sliding_window is not None and T > self.sliding_window:
            pos = torch.arange(T, device=x.device)
            distance = pos.view(-1, 1) - pos
            mask = (distance >= 0) & (distance < self.sliding_window)  # (T, T)
        y = self.attend(q, k, v, mask)  # (B, nh, T, hs)
        return y.transpose(1, 2).reshape(B, T, nh * hs)

    def attend(self, q, k, v, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Scaled dot-product attention; `mask` is boolean (True = attend), None = causal."""
        cap = self.config.attention_logit_softcapping
        if cap is None:
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None, scale=self.scale, enable_gqa=k.size(1) != q.size(1)
            )
        # soft-capping needs the scores themselves, so no fused kernel here
        groups = q.size(1) // k.size(1)
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = softcap(q @ k.transpose(-2, -1) * self.scale, cap)  # (B, nh, T, S)
        if mask is None:
            mask = torch.ones(q.size(2), k.size(2), dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
        return F.softmax(scores, dim=-1, dtype=torch.float).to(q.dtype) @ v

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # LitGPT checkpoints before the fused [q|k|v] layout named the projection `attn.attn` and interleaved it per group
        for kind in ("weight", "bias"):
            legacy = state_dict.pop(f"{prefix}attn.{kind}", None)
            if legacy is not None:
                state_dict[f"{prefix}qkv.{kind}"] = deinterleave_qkv(legacy, self.config)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def deinterleave_qkv(param: torch.Tensor, config: Config) -> torch.Tensor:
    """Turn a per-group [q.. k v][q.. k v].. projection into the [q..|k..|v..] layout."""
    per_group = config.n_head // config.n_query_groups
    groups = param.view(config.n_query_groups, per_group + 2, config.head_size, *param.shape[1:])
    q, k, v = groups[:, :per_group], groups[:, per_group], groups[:, per_group + 1]
    return torch.cat((q.reshape(-1, *param.shape[1:]), k.reshape(-1, *param.shape[1:]), v.reshape(-1, *param.shape[1:])))


class KVCache(nn.Module):
    """Keys and values of past positions, (B, n_query_groups, max_seq_length, head_size) each."""

    def __init__(self, batch_size: int, n_groups: int, max_seq_length: int, head_size: int, device=None, dtype=None) -> None:
        super().__init__()
        shape = (batch_size, n_groups, max_seq_length, head_size)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def forward(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, ng, T, hs) at `input_pos` ((T,) or (B, T)) and return the whole cache."""
        self.k, self.v = self.k.to(k.dtype), self.v.to(v.dtype)
        B = k.size(0)
        # indexed assignment (index_put_), which torch.compile does in place: with scatter_ or index_copy_ it wrote
        # a fresh copy of the whole cache and copied that back, every layer of every decoding step
        if input_pos.dim() == 1:
            self.k[:B, :, input_pos] = k
            self.v[:B, :, input_pos] = v
        else:
            rows = torch.arange(B, device=input_pos.device).unsqueeze(1)  # (B, 1) against (B, T): (B, T, ng, hs)
            self.k[rows, :, input_pos] = k.transpose(1, 2)
            self.v[rows, :, input_pos] = v.transpose(1, 2)
        return self.k[:B], self.v[:B]


class GptNeoxMLP(nn.Module):
    def __init__(self, config: Config, intermediate_size: Optional[int] = None) -> None:
        super().__init__()
        size = intermediate_size or config.intermediate_size
        self.fc = nn.Linear(config.n_embd, size, bias=config.bias)
        self.proj = nn.Linear(size, config.n_embd, bias=config.bias)
        self.approximate = config.gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate=self.approximate))


class LLaMAMLP(nn.Module):
    """Gated MLP: proj(act(fc_1(x)) * fc_2(x)), SiLU for LLaMA (SwiGLU), GELU for Gemma (GeGLU)."""

    def __init__(self, config: Config, intermediate_size: Optional[int] = None) -> None:
        super().__init__()
        size = intermediate_size or config.intermediate_size
        self.fc_1 = nn.Linear(config.n_embd, size, bias=config.bias)
        self.fc_2 = nn.Linear(config.n_embd, size, bias=config.bias)
        self.proj = nn.Linear(size, config.n_embd, bias=config.bias)
        self.approximate = config.gelu_approximate

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc_1(x)) * self.fc_2(x))


class GemmaMLP(LLaMAMLP):
    def act(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)


class LLaMAMoE(nn.Module):
    """Mixture of experts: each token goes to its top `n_expert_per_token` experts, weighted by a softmax over them."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.gate = nn.Linear(config.n_embd, config.n_expert, bias=False)
        self.experts = nn.ModuleList(LLaMAMLP(config, config.moe_intermediate_size) for _ in range(config.n_expert))
        self.top_k = config.n_expert_per_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        x = x.reshape(-1, C)  # (B*T, C)
        weights, chosen = self.gate(x).topk(self.top_k, dim=-1)  # (B*T, k)
        weights = weights.softmax(dim=-1, dtype=torch.float).to(x.dtype)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == e)
            if token.numel():
                y.index_add_(0, token, weights[token, slot, None] * expert(x[token]))
        return y.view(B, T, C)


MLP_CLASSES = {"GptNeoxMLP": GptNeoxMLP, "LLaMAMLP": LLaMAMLP, "GemmaMLP": GemmaMLP, "LLaMAMoE": LLaMAMoE}


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32; Gemma's variant scales by (1 + weight)."""

    def __init__(self, size: int, eps: float = 1e-6, add_unit_offset: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps
        self.add_unit_offset = add_unit_offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps, self.add_unit_offset)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, add_unit_offset: bool = False) -> torch.Tensor:
    """`RMSNorm` as a function: computed in float32, returned in x's dtype."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    weight = weight.float()
    return (x * (1 + weight if add_unit_offset else weight)).to(dtype)


def norm(config: Config, size: int) -> nn.Module:
    if config.norm_class_name == "RMSNorm":
        return RMSNorm(size, eps=config.norm_eps, add_unit_offset=config.norm_unit_offset)
    return nn.LayerNorm(size, eps=config.norm_eps, elementwise_affine=config.norm_affine)


def softcap(x: torch.Tensor, cap: float) -> torch.Tensor:
    return torch.tanh(x / cap) * cap


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def build_rope_cache(
    seq_len: int,
    n_elem: int,
    base: float = 10000,
    condense_ratio: int = 1,
    adjustments: Optional[dict] = None,
    device: Optional[torch.device] = None,
    long_factors: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (seq_len, n_elem) of rotary embeddings, with linear, llama3, YaRN or LongRoPE frequency scaling.

    LongRoPE divides each frequency by its own factor, from `short_factor`, or `long_factor` with `long_factors`.
    """
    theta, amplitude = rope_frequencies(n_elem, base, adjustments, device, long_factors)
    if n_elem == 1:
        # HF and LitGPT broadcast a single rotary element to two equal copies, which makes q and k one element wider
        # than the heads (and than the KV cache). One copy scaled by sqrt(2) adds the same q.k to the scores.
        amplitude *= math.sqrt(2)
    positions = torch.arange(seq_len, device=device).float() / condense_ratio
    angles = torch.outer(positions, theta).repeat(1, 2)[:, :n_elem]  # (seq_len, n_elem)
    return torch.cos(angles) * amplitude, torch.sin(angles) * amplitude


def rope_frequencies(
    n_elem: int, base: float, adjustments: Optional[dict] = None, device: Optional[torch.device] = None, long_factors: bool = False
) -> Tuple[torch.Tensor, float]:
    """The rotary frequencies (n_elem / 2,) after scaling, and the amplitude of cos and sin."""
    exponents = torch.arange(0, n_elem, 2, device=device).float() / n_elem
    theta = 1.0 / base**exponents  # (n_elem / 2,)
    amplitude = 1.0
    adj = adjustments or {}
    if "beta_fast" in adj or "beta_slow" in adj:  # YaRN: blend interpolated and extrapolated frequencies
        factor, original = adj["factor"], adj["original_max_seq_len"]

        def dim_of(rotations: float) -> float:
            return n_elem * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

        low, high = dim_of(adj["beta_fast"]), dim_of(adj["beta_slow"])
        if adj.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, n_elem - 1)
        if low == high:
            high += 0.001
        # ramp is 0 for the high frequencies (kept) and 1 for the low ones (interpolated)
        ramp = ((torch.arange(n_elem // 2, device=device).float() - low) / (high - low)).clamp(0, 1)
        theta = theta / factor * ramp + theta * (1 - ramp)
        mscale, mscale_all = adj.get("mscale"), adj.get("mscale_all_dim")
        if mscale and mscale_all:
            amplitude = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all)
        elif mscale_all or mscale:
            amplitude = yarn_mscale(factor, mscale_all or mscale)
    elif "long_factor" in adj:
        factors = torch.tensor(adj["long_factor" if long_factors else "short_factor"], device=device, dtype=torch.float32)
        theta = theta / factors[: theta.numel()]
        amplitude = adj["attention_factor"]
    elif "low_freq_factor" in adj:  # llama3: scale low frequencies, keep high ones, blend in between
        factor = adj["factor"]
        ratio = adj["original_max_seq_len"] * theta / (2 * math.pi)
        smooth = ((ratio - adj["low_freq_factor"]) / (adj["high_freq_factor"] - adj["low_freq_factor"])).clamp(0, 1)
        theta = (1 - smooth) * theta / factor + smooth * theta
    elif "factor" in adj:  # linear position interpolation
        theta = theta / adj["factor"]
    return theta, amplitude


def document_masks(document_ids: torch.Tensor, window: Optional[int] = None) -> Tuple[torch.Tensor, Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """For packed rows of samples, (B, T) ids of each token's sample: the positions within each sample (B, T) and
    the boolean attention masks (B, 1, T, T), causal within a sample (and within the sliding `window`)."""
    B, T = document_ids.shape
    idx = torch.arange(T, device=document_ids.device).expand(B, T)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    start_of = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values  # each token's sample start
    positions = idx - start_of
    same = document_ids.unsqueeze(-1) == document_ids.unsqueeze(-2)  # (B, T, T)
    distance = idx.unsqueeze(-1) - idx.unsqueeze(-2)
    causal = (same & (distance >= 0)).unsqueeze(1)  # (B, 1, T, T)
    return positions, (causal, None if window is None else causal & (distance < window).unsqueeze(1))


class RoPE(nn.Module):
    """Rotary position embedding of q and k: the first `n_elem` elements of each head turn, the rest stay."""

    def __init__(self, n_elem: int) -> None:
        super().__init__()
        self.n_elem = n_elem

    def forward(self, q, k, cos, sin) -> Tuple[torch.Tensor, torch.Tensor]:
        """q (B, nh, T, hs), k (B, ng, T, hs) rotated by cos, sin of shape (B|1, T, n_elem)."""
        n = self.n_elem
        if n == 0:
            return q, k
        q = torch.cat((apply_rope(q[..., :n], cos, sin), q[..., n:]), dim=-1)
        k = torch.cat((apply_rope(k[..., :n], cos, sin), k[..., n:]), dim=-1)
        return q, k


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, nh, T, n) by cos, sin of shape (B|1, T, n)."""
    half = x.size(-1) // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B|1, 1, T, n)
    return (x * cos + rotated * sin).to(x.dtype)

"""Triton kernels of a one-token decode step: matrix-vector products with the block's RMSNorm and SwiGLU fused in,
and attention of one query over the KV cache.

At batch 1 a decode step is a chain of matrix-vector products, each bound by reading its weight once. Inductor
tunes a reduction kernel for each of them afresh at every compilation, and lands on block sizes that differ from
one compilation to the next (Llama-3.2-1B decoded at 837-992 tokens/s with the same code on an H200). These
kernels have fixed configurations, so a compiled step runs at the same speed every time:

- `gemv(x, w)`: x · wᵀ (+ bias), with `norm_weight` the RMSNorm of x folded in. The norm scales each input by
  g[k] and the whole row by one number, so the kernel sums x[k]·g[k]·w[n, k] and x[k]² in the same pass and
  scales at the end: x is read once, with the weight.
- `gemv(x, w, w2)`: SiLU(x · wᵀ) * (x · w2ᵀ), the gated MLP's fc_1 and fc_2 in one pass.
- `decode_attention(q, k, v, mask)`: flash decoding. cuDNN's attention kernel spends 7-9 µs a layer on a
  single query (it spreads the work over rows and heads only); this one also splits the cache into slices.

Each launch on a Hopper GPU is a programmatic dependent launch, like inductor's own kernels in a compiled step:
it is scheduled while the kernel before it finishes, and waits for that one's output before reading.

`decode_block(block)` is a view of a transformer block that calls them through the ops `torch.ops.litgpt.gemv` and
`torch.ops.litgpt.decode_attention`, which torch.compile leaves whole; off CUDA, without Triton, or for more than
one row a product (or another head size than a power of two, for attention) computes the same with torch.
"""

import contextlib
import copy
import functools
import os
from typing import Any, Optional, Tuple

import torch
from torch import nn

from litgpt.model import Block, CausalSelfAttention, LLaMAMLP, RMSNorm, rms_norm

# (BLOCK_N rows, BLOCK_K columns, warps) by (N, K, fc_1/fc_2 pair): the fastest configuration for the shapes of
# Llama-3.2-1B (of 124 tried) and Llama-3.1-8B (of 183-201) on an H200, timed in CUDA graphs over 400 MB of weight
# copies (benchmarks/RESULTS.md, seventh session); other shapes get `_config`'s rule
CONFIGS: dict = {
    (3072, 2048, False): (8, 512, 4),  # 1B qkv: 5.2 µs, 2.4 TB/s
    (2048, 2048, False): (4, 1024, 4),  # 1B attention output: 3.6 µs
    (8192, 2048, True): (8, 512, 4),  # 1B fc_1 + fc_2: 20.0 µs, 3.4 TB/s
    (2048, 8192, False): (4, 2048, 4),  # 1B MLP projection: 9.8 µs, 3.4 TB/s
    (6144, 4096, False): (16, 512, 4),  # 8B qkv: 14.4 µs, 3.5 TB/s
    (4096, 4096, False): (4, 1024, 2),  # 8B attention output: 9.7 µs, 3.5 TB/s
    (14336, 4096, True): (4, 256, 2),  # 8B fc_1 + fc_2: 57.6 µs, 4.1 TB/s
    (4096, 14336, False): (1, 1024, 4),  # 8B MLP projection: 28.9 µs, 4.1 TB/s
}


def gemv(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight2: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    bias2: Optional[torch.Tensor] = None,
    norm_weight: Optional[torch.Tensor] = None,
    norm_eps: float = 0.0,
    norm_offset: bool = False,
    residual: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """x (..., K) with one row → (..., N), through `torch.ops.litgpt.gemv` (see the module's docstring); `residual`
    (..., N) is added to a single product's output."""
    return torch.ops.litgpt.gemv(x, weight, weight2, bias, bias2, norm_weight, norm_eps, norm_offset, residual)


@torch.library.custom_op("litgpt::gemv", mutates_args=())
def _gemv_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight2: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    bias2: Optional[torch.Tensor],
    norm_weight: Optional[torch.Tensor],
    norm_eps: float,
    norm_offset: bool,
    residual: Optional[torch.Tensor],
) -> torch.Tensor:
    args = (x, weight, weight2, bias, bias2, norm_weight, norm_eps, norm_offset, residual)
    if x.is_cuda and x.numel() == x.size(-1) and weight.stride(-1) == 1 and (weight2 is None or weight2.stride() == weight.stride()) and _triton_available():
        return gemv_triton(*args)
    return gemv_torch(*args)


@_gemv_op.register_fake
def _(x, weight, weight2, bias, bias2, norm_weight, norm_eps, norm_offset, residual):
    return x.new_empty(*x.shape[:-1], weight.size(0))


def gemv_torch(x, weight, weight2=None, bias=None, bias2=None, norm_weight=None, norm_eps=0.0, norm_offset=False, residual=None) -> torch.Tensor:
    """What the op computes, with torch (any device, any number of rows), rounding as the model's own layers do."""
    if norm_weight is not None:
        x = rms_norm(x, norm_weight, norm_eps, norm_offset)
    y = nn.functional.linear(x, weight, bias)
    if weight2 is not None:
        return nn.functional.silu(y) * nn.functional.linear(x, weight2, bias2)
    return y if residual is None else residual + y


def gemv_triton(x, weight, weight2=None, bias=None, bias2=None, norm_weight=None, norm_eps=0.0, norm_offset=False, residual=None) -> torch.Tensor:
    """The op's Triton kernel for x with one row (runs under TRITON_INTERPRET=1 on CPU tensors too)."""
    N, K = weight.shape
    block_n, block_k, warps = _config(N, K, weight2 is not None)
    out = x.new_empty(*x.shape[:-1], N)
    x = x.reshape(K).contiguous()
    pdl = _pdl(x.device)
    unused = weight  # the pointer a variant's absent argument gets
    with _on(x.device):  # Triton launches on the current device
        _kernel()[(_cdiv(N, block_n),)](
            x, weight, unused if weight2 is None else weight2, unused if bias is None else bias,
            unused if bias2 is None else bias2, unused if norm_weight is None else norm_weight,
            unused if residual is None else residual.reshape(N).contiguous(), out, N, K, weight.stride(0), norm_eps,
            HAS_W2=weight2 is not None, HAS_BIAS=bias is not None, HAS_RESIDUAL=residual is not None,
            HAS_NORM=norm_weight is not None, NORM_OFFSET=norm_offset, BLOCK_N=block_n, BLOCK_K=block_k,
            EVEN=N % block_n == 0 and K % block_k == 0, PDL=pdl, num_warps=warps, **({"launch_pdl": True} if pdl else {}),
        )
    return out


def _on(device: torch.device) -> Any:
    """The CUDA device guard for `device` (nothing off CUDA)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _config(N: int, K: int, pair: bool) -> Tuple[int, int, int]:
    """(BLOCK_N, BLOCK_K, warps): the measured one for this shape, else what won for most measured shapes: 4 rows
    of 1,024-2,048 columns a step, 4 warps (fewer rows when that leaves under two programs an SM)."""
    if (N, K, pair) in CONFIGS:
        return CONFIGS[(N, K, pair)]
    block_k = min(2048 if K >= 4096 else 1024, _pow2_at_most(K))
    block_n = 4 if N >= 1024 else 1
    return block_n, block_k, 4


def _pow2_at_most(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


@functools.lru_cache(maxsize=None)
def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def _pdl(device: torch.device) -> bool:
    """Programmatic dependent launch: on CUDA GPUs of compute capability 9 or more, with a Triton that has it."""
    if device.type != "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        return False
    import triton.language as tl

    return torch.cuda.get_device_capability(device)[0] >= 9 and hasattr(getattr(tl.extra, "cuda", None), "gdc_wait")


@functools.lru_cache(maxsize=None)
def _kernel() -> Any:
    import triton
    import triton.language as tl

    @triton.jit
    def gemv_kernel(x_ptr, w_ptr, w2_ptr, b_ptr, b2_ptr, g_ptr, r_ptr, out_ptr, N, K, stride_w, eps,
                    HAS_W2: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, HAS_NORM: tl.constexpr, NORM_OFFSET: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EVEN: tl.constexpr, PDL: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.arange(0, BLOCK_K)
        row_ok = rows < N
        offsets = rows[:, None].to(tl.int64) * stride_w + cols[None, :]
        if PDL:
            tl.extra.cuda.gdc_wait()  # for the kernel that writes x (loading weights before it measured no faster)
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        acc2 = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        squares = tl.zeros((BLOCK_K,), dtype=tl.float32)
        for k in range(0, K, BLOCK_K):
            # weights are read once a step: evict_first keeps them from pushing x and the KV cache out of L2
            if EVEN:
                w = tl.load(w_ptr + offsets + k, eviction_policy="evict_first")
                if HAS_W2:
                    w2 = tl.load(w2_ptr + offsets + k, eviction_policy="evict_first")
                x = tl.load(x_ptr + k + cols, eviction_policy="evict_last").to(tl.float32)
            else:
                mask = row_ok[:, None] & (k + cols < K)[None, :]
                w = tl.load(w_ptr + offsets + k, mask=mask, other=0.0, eviction_policy="evict_first")
                if HAS_W2:
                    w2 = tl.load(w2_ptr + offsets + k, mask=mask, other=0.0, eviction_policy="evict_first")
                x = tl.load(x_ptr + k + cols, mask=k + cols < K, other=0.0, eviction_policy="evict_last").to(tl.float32)
            if HAS_NORM:
                squares += x * x
                if EVEN:
                    g = tl.load(g_ptr + k + cols, eviction_policy="evict_last").to(tl.float32)
                else:
                    g = tl.load(g_ptr + k + cols, mask=k + cols < K, other=0.0, eviction_policy="evict_last").to(tl.float32)
                if NORM_OFFSET:
                    g = g + 1.0
                x = x * g
            acc += w.to(tl.float32) * x[None, :]
            if HAS_W2:
                acc2 += w2.to(tl.float32) * x[None, :]
        y = tl.sum(acc, axis=1)
        if HAS_W2:
            y2 = tl.sum(acc2, axis=1)
        if HAS_NORM:
            rstd = 1.0 / tl.sqrt(tl.sum(squares, axis=0) / K + eps)
            y = y * rstd
            if HAS_W2:
                y2 = y2 * rstd
        if HAS_BIAS:
            y += tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
            if HAS_W2:
                y2 += tl.load(b2_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        out_type = out_ptr.dtype.element_ty
        if HAS_W2:
            # rounded where the model's layers round: fc_1 and fc_2 outputs, then the SiLU
            a = y.to(out_type).to(tl.float32)
            silu = (a / (1.0 + tl.exp(-a))).to(out_type).to(tl.float32)
            y = silu * y2.to(out_type).to(tl.float32)
        if HAS_RESIDUAL:  # rounded as the model rounds: the product, then the sum
            y = y.to(out_type).to(tl.float32) + tl.load(r_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        if PDL:
            tl.extra.cuda.gdc_launch_dependents()
        tl.store(out_ptr + rows, y.to(out_type), mask=row_ok)

    return gemv_kernel


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Attention of one query per row over the KV cache: q (B, nh, 1, hs), k and v (B, ng, S, hs), mask boolean
    (B|1, 1, 1, S), True = attend → (B, nh, 1, hs), through `torch.ops.litgpt.decode_attention`."""
    return torch.ops.litgpt.decode_attention(q, k, v, mask, scale)


@torch.library.custom_op("litgpt::decode_attention", mutates_args=())
def _decode_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    hs = q.size(-1)
    if q.is_cuda and hs >= 16 and hs & (hs - 1) == 0 and q.stride(-1) == k.stride(-1) == v.stride(-1) == 1 and _triton_available():
        return decode_attention_triton(q, k, v, mask, scale)
    return decode_attention_torch(q, k, v, mask, scale)


@_decode_attention_op.register_fake
def _(q, k, v, mask, scale):
    return torch.empty_like(q, memory_format=torch.contiguous_format)


def decode_attention_torch(q, k, v, mask, scale) -> torch.Tensor:
    """What the op computes, with torch's SDPA (a row that may attend nowhere gives zeros)."""
    y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=k.size(1) != q.size(1))
    return y.masked_fill(~mask.any(-1, keepdim=True), 0)


def decode_attention_triton(q, k, v, mask, scale) -> torch.Tensor:
    """The op as two Triton kernels (flash decoding): programs for each (row, KV head, slice of the cache) attend
    with all the query heads of that KV head, then one program per (row, head) merges the slices."""
    B, nh, _, hs = q.shape
    ng, S = k.size(1), k.size(2)
    groups = nh // ng
    block_s = 64 if hs <= 128 else 32  # 32 measured no faster for Llama-3.1-8B
    splits = max(1, min(_cdiv(S, block_s), _cdiv(2 * _sm_count(q.device), B * ng)))  # about two programs an SM
    chunk = _cdiv(_cdiv(S, splits), block_s) * block_s
    splits = _cdiv(S, chunk)
    partial = torch.empty(B * nh, splits, hs + 2, device=q.device, dtype=torch.float32)  # output, max, sum
    out = torch.empty(B, nh, 1, hs, device=q.device, dtype=q.dtype)
    mask = mask.reshape(mask.size(0), S)
    pdl = _pdl(q.device)
    pdl_launch = {"launch_pdl": True} if pdl else {}
    attend, merge = _attention_kernels()
    with _on(q.device):  # Triton launches on the current device
        attend[(B * ng, splits)](
            q, k, v, mask, partial, q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), v.stride(0),
            v.stride(1), v.stride(2), mask.stride(0) if mask.size(0) > 1 else 0, S, chunk, splits, ng, scale,
            GROUPS=groups, GROUPS_PAD=max(16, _pow2_at_least(groups)), HS=hs, BLOCK_S=block_s,
            IEEE=q.dtype == torch.float32, PDL=pdl, num_warps=4, **pdl_launch,
        )
        merge[(B * nh,)](partial, out, splits, SPLITS_PAD=max(2, _pow2_at_least(splits)), HS=hs, PDL=pdl, num_warps=4, **pdl_launch)
    return out


@functools.lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int:
    """The GPU's streaming multiprocessors (an H200's 132 off CUDA, for the interpreter)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 132


def _pow2_at_least(n: int) -> int:
    return 1 << (max(n, 1) - 1).bit_length()


@functools.lru_cache(maxsize=None)
def _attention_kernels() -> Tuple[Any, Any]:
    import triton
    import triton.language as tl

    @triton.jit
    def attend_kernel(q_ptr, k_ptr, v_ptr, mask_ptr, partial_ptr, sq_b, sq_h, sk_b, sk_h, sk_s, sv_b, sv_h, sv_s, smask_b,
                      S, chunk, splits, ng, scale,
                      GROUPS: tl.constexpr, GROUPS_PAD: tl.constexpr, HS: tl.constexpr, BLOCK_S: tl.constexpr,
                      IEEE: tl.constexpr, PDL: tl.constexpr):
        row_head = tl.program_id(0)
        split = tl.program_id(1)
        b = row_head // ng
        g = row_head % ng
        heads = tl.arange(0, GROUPS_PAD)
        head_ok = heads < GROUPS
        d = tl.arange(0, HS)
        if PDL:
            tl.extra.cuda.gdc_wait()
        q = tl.load(q_ptr + b * sq_b + (g * GROUPS + heads)[:, None] * sq_h + d[None, :], mask=head_ok[:, None], other=0.0)
        best = tl.full((GROUPS_PAD,), float("-inf"), tl.float32)
        total = tl.zeros((GROUPS_PAD,), tl.float32)
        acc = tl.zeros((GROUPS_PAD, HS), tl.float32)
        start = split * chunk
        end = tl.minimum(start + chunk, S)
        for s0 in range(start, end, BLOCK_S):
            s = s0 + tl.arange(0, BLOCK_S)
            s_ok = s < end
            allowed = s_ok & (tl.load(mask_ptr + b * smask_b + s, mask=s_ok, other=0) != 0)
            k = tl.load(k_ptr + b * sk_b + g * sk_h + s[:, None] * sk_s + d[None, :], mask=s_ok[:, None], other=0.0)
            if IEEE:
                scores = tl.dot(q, tl.trans(k), input_precision="ieee")
            else:
                scores = tl.dot(q, tl.trans(k))
            scores = tl.where(allowed[None, :], scores * scale, float("-inf"))
            new_best = tl.maximum(best, tl.max(scores, axis=1))
            shift = tl.where(new_best == float("-inf"), 0.0, new_best)  # rows with nothing to attend to yet
            p = tl.exp(scores - shift[:, None])
            rescale = tl.exp(best - shift)
            total = total * rescale + tl.sum(p, axis=1)
            v = tl.load(v_ptr + b * sv_b + g * sv_h + s[:, None] * sv_s + d[None, :], mask=s_ok[:, None], other=0.0)
            if IEEE:
                acc = acc * rescale[:, None] + tl.dot(p, v.to(tl.float32), input_precision="ieee")
            else:
                acc = acc * rescale[:, None] + tl.dot(p.to(v.dtype), v)
            best = new_best
        if PDL:
            tl.extra.cuda.gdc_launch_dependents()
        # partial[(b * nh + head), split] = [acc (HS), best, total]
        base = partial_ptr + ((b * ng + g) * GROUPS + heads)[:, None].to(tl.int64) * (splits * (HS + 2)) + split * (HS + 2)
        tl.store(base + d[None, :], acc, mask=head_ok[:, None])
        tl.store(base + HS + tl.zeros((1,), tl.int32)[None, :], best[:, None], mask=head_ok[:, None])
        tl.store(base + HS + 1 + tl.zeros((1,), tl.int32)[None, :], total[:, None], mask=head_ok[:, None])

    @triton.jit
    def merge_kernel(partial_ptr, out_ptr, splits, SPLITS_PAD: tl.constexpr, HS: tl.constexpr, PDL: tl.constexpr):
        row_head = tl.program_id(0)
        sp = tl.arange(0, SPLITS_PAD)
        sp_ok = sp < splits
        d = tl.arange(0, HS)
        if PDL:
            tl.extra.cuda.gdc_wait()
        base = partial_ptr + row_head.to(tl.int64) * (splits * (HS + 2)) + sp * (HS + 2)
        best = tl.load(base + HS, mask=sp_ok, other=float("-inf"))
        total = tl.load(base + HS + 1, mask=sp_ok, other=0.0)
        acc = tl.load(base[:, None] + d[None, :], mask=sp_ok[:, None], other=0.0)
        top = tl.max(best, axis=0)
        top = tl.where(top == float("-inf"), 0.0, top)
        weight = tl.where(sp_ok, tl.exp(best - top), 0.0)
        norm = tl.sum(weight * total, axis=0)
        y = tl.sum(acc * weight[:, None], axis=0) / tl.where(norm == 0.0, 1.0, norm)
        if PDL:
            tl.extra.cuda.gdc_launch_dependents()
        tl.store(out_ptr + row_head.to(tl.int64) * HS + d, y.to(out_ptr.dtype.element_ty))

    return attend_kernel, merge_kernel


class DecodeLinear(nn.Module):
    """`linear` (optionally after `norm`, an RMSNorm) through `torch.ops.litgpt.gemv`."""

    def __init__(self, linear: nn.Linear, norm: Optional[RMSNorm] = None) -> None:
        super().__init__()
        self.linear = linear
        self.norm = norm

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        return gemv(x, self.linear.weight, bias=self.linear.bias, residual=residual, **_norm_args(self.norm))


class DecodeGatedMLP(nn.Module):
    """A LLaMA MLP (SwiGLU; optionally after `norm`): fc_1 and fc_2 in one `gemv`, then the projection in another."""

    def __init__(self, mlp: LLaMAMLP, norm: Optional[RMSNorm] = None) -> None:
        super().__init__()
        self.mlp = mlp
        self.norm = norm

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        m = self.mlp
        hidden = gemv(x, m.fc_1.weight, m.fc_2.weight, m.fc_1.bias, m.fc_2.bias, **_norm_args(self.norm))
        return gemv(hidden, m.proj.weight, bias=m.proj.bias, residual=residual)


def _norm_args(norm: Optional[RMSNorm]) -> dict:
    if norm is None:
        return {}
    return {"norm_weight": norm.weight, "norm_eps": norm.eps, "norm_offset": norm.add_unit_offset}


def shallow_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` sharing its parameters, buffers and submodules, whose submodules can be swapped."""
    copied = copy.copy(module)
    copied._modules = dict(module._modules)
    return copied


def decode_block(block: nn.Module, products: bool = True) -> nn.Module:
    """A view of `block` (sharing its weights and KV cache) whose plain linear layers run through `gemv` (with
    `products`: for one row), and whose attention of one query a row over the cache runs through `decode_attention`
    (unless it soft-caps its scores).

    In a LLaMA-style block (sequential residual, RMSNorms) the norms move into the products that read them, a LLaMA
    MLP becomes one fused fc_1/fc_2 product and the projection, and each projection adds the residual itself.
    Attention of another class (adapters), layers with hooks (tensor parallelism's all-reduce), LoRA or quantized
    layers stay as they are.
    """
    if type(block) is not Block:
        return block
    view = shallow_copy(block)
    fold = products and not block.parallel_residual and _plain_norm(block.norm_1) and _plain_norm(block.norm_2)
    attn = block.attn
    if type(attn) is CausalSelfAttention:
        qkv, proj = attn.qkv, attn.proj
        if products and _plain(qkv):
            qkv = DecodeLinear(qkv, block.norm_1 if fold else None)
            if fold:
                view._modules["norm_1"] = nn.Identity()
        if products and _plain(proj):
            proj = DecodeLinear(proj)
        attn = SharedCacheAttention(block.attn, qkv, proj)
        view._modules["attn"] = attn
    mlp = block.mlp
    if products and type(mlp) is LLaMAMLP and all(_plain(getattr(mlp, name)) for name in ("fc_1", "fc_2", "proj")) and not _hooked(mlp):
        view._modules["mlp"] = DecodeGatedMLP(mlp, block.norm_2 if fold else None)
        if fold:
            view._modules["norm_2"] = nn.Identity()
    identity = all(isinstance(view._modules[name], nn.Identity) for name in ("norm_1", "norm_2", "post_attention_norm", "post_mlp_norm"))
    if identity and isinstance(view.attn.proj, DecodeLinear) and isinstance(view.mlp, DecodeGatedMLP):
        return ResidualBlock(view.attn, view.mlp)
    return view


class ResidualBlock(nn.Module):
    """A decode view of a LLaMA-style block whose norms moved into its products: the projections add the residual."""

    def __init__(self, attn: nn.Module, mlp: "DecodeGatedMLP") -> None:
        super().__init__()
        self.attn, self.mlp = attn, mlp

    def forward(self, x, cos, sin, input_pos=None, input_pos_maxp1=None, masks=None) -> torch.Tensor:
        x = self.attn.proj(self.attn.heads(x, cos, sin, input_pos, input_pos_maxp1, masks), residual=x)
        return self.mlp(x, residual=x)


_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
               "_forward_pre_hooks_with_kwargs")


class SharedCacheAttention(CausalSelfAttention):
    """A decode view of an attention layer: the layer's own submodules (weights shared) with `qkv` and `proj` in
    their place, attention of one query a row over the cache through `decode_attention`, and the layer's KV cache
    read from the layer itself, which the model replaces whenever it resizes or swaps it."""

    def __init__(self, layer: CausalSelfAttention, qkv: nn.Module, proj: nn.Module) -> None:
        with torch.device("meta"):  # the view's weights are the layer's: nothing is allocated for these
            super().__init__(layer.config, 0)
        for name, module in layer.named_children():
            if name != "kv_cache":
                setattr(self, name, module)
        self.qkv, self.proj = qkv, proj
        self.sliding_window, self.scale = layer.sliding_window, layer.scale
        self.__dict__["layer"] = layer  # not a submodule: the view's parameters are the layer's
        for hooks in _HOOK_DICTS:  # the layer's hooks, shared (tensor parallelism all-reduces the layer's output)
            if hooks in layer.__dict__:
                self.__dict__[hooks] = layer.__dict__[hooks]

    @property
    def kv_cache(self) -> Optional[nn.Module]:
        return self.__dict__["layer"].kv_cache

    @kv_cache.setter
    def kv_cache(self, value: Optional[nn.Module]) -> None:
        if value is not None:  # `CausalSelfAttention.__init__` sets None
            raise AttributeError("A decode view reads its layer's KV cache: give the model a cache instead")

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """`CausalSelfAttention.attend` with `decode_attention` for one query a row over the cache (masks given),
        unless the scores are soft-capped."""
        if q.size(2) == 1 and mask is not None and self.config.attention_logit_softcapping is None:
            return decode_attention(q, k, v, mask, self.scale)
        return super().attend(q, k, v, mask)


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _plain(layer: Any) -> bool:
    return type(layer) is nn.Linear and not _hooked(layer)


def _plain_norm(norm: Any) -> bool:
    return type(norm) is RMSNorm and not _hooked(norm)

"""Tensor parallelism for inference: one process per device, every device working at once.

Each rank holds a slice of every block (Megatron-style) and the whole of the rest:

    attn.qkv   [q | k | v] rows of this rank's heads and query groups       (column parallel)
    attn.proj  columns of this rank's heads, then all_reduce(sum)          (row parallel)
    mlp.fc / fc_1 / fc_2   rows of this rank's share of intermediate_size  (column parallel)
    mlp.proj   columns of that share, then all_reduce(sum)                 (row parallel)
    wte, norms, lm_head, RoPE cache: replicated

so a block costs two all-reduces of its (B, T, n_embd) output. `apply_tp` is a transform of the plain GPT;
afterwards `model.config` (and each attention's config) describes this rank's slice: n_head / N heads,
n_query_groups / N groups, intermediate_size / N, the same head_size; the KV cache follows from it. Every
rank samples with the same seed from the same all-reduced logits, so all ranks draw the same tokens.
"""

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Optional

from litgpt.quantize import Quantize

SHARDED_MLPS = ("GptNeoxMLP", "LLaMAMLP", "GemmaMLP")


def check_tp(config: "Config", world_size: int) -> None:
    """Raise a one-line ValueError (NotImplementedError) if `config` cannot (yet) be split over `world_size` ranks."""
    if world_size < 1:
        raise ValueError(f"Tensor parallelism needs at least 1 device, got {world_size}")
    if config.mlp_class_name not in SHARDED_MLPS:
        raise NotImplementedError(f"Tensor parallelism supports {', '.join(SHARDED_MLPS)}, not {config.mlp_class_name}")
    if config.norm_qk and config.norm_qk_type == "olmo2":
        raise NotImplementedError("Tensor parallelism does not support OLMo 2's q/k norm across all heads")
    for name in ("n_head", "n_query_groups", "intermediate_size"):
        value = getattr(config, name)
        if value % world_size:
            raise ValueError(
                f"{config.name or 'The model'} cannot be split over {world_size} devices: its {name}={value} is not "
                f"divisible by {world_size}"
            )


def tp_config(config: "Config", world_size: int) -> "Config":
    """The config of one rank's slice: a 1/world_size share of the heads, query groups and MLP width."""
    check_tp(config, world_size)
    return replace(
        config,
        n_head=config.n_head // world_size,
        n_query_groups=config.n_query_groups // world_size,
        head_size=config.head_size,
        intermediate_size=config.intermediate_size // world_size,
    )


def apply_tp(model: "GPT", rank: int, world_size: int, group: Any = None) -> "GPT":
    """Keep only rank `rank`'s slice of each block's attention and MLP (in place) and all-reduce their outputs
    over `group` (default: the whole world); returns the model.

    The weights may be on any device, memory-mapped CPU tensors included: only the slices are copied.
    """
    import torch.nn as nn

    from litgpt.model import CausalSelfAttention

    config = model.config
    local = tp_config(config, world_size)
    hs, nh, ng = config.head_size, config.n_head, config.n_query_groups
    nh_r, ng_r, size_r = local.n_head, local.n_query_groups, local.intermediate_size
    for i, block in enumerate(model.transformer.h):
        attn, mlp = block.attn, block.mlp
        if type(attn) is not CausalSelfAttention:
            raise NotImplementedError(f"Tensor parallelism needs plain attention layers; block {i} has {type(attn).__name__}")
        linears = [attn.qkv, attn.proj] + [getattr(mlp, name) for name in ("fc", "fc_1", "fc_2", "proj") if hasattr(mlp, name)]
        if any(type(layer) is not nn.Linear for layer in linears):
            raise NotImplementedError(f"Tensor parallelism needs plain nn.Linear layers (merge LoRA first); block {i} has others")
        # this rank's heads (rows of q) and their query groups (rows of k and v) in the fused [q | k | v]
        q = (rank * nh_r * hs, (rank + 1) * nh_r * hs)
        k = (nh * hs + rank * ng_r * hs, nh * hs + (rank + 1) * ng_r * hs)
        v = ((nh + ng) * hs + rank * ng_r * hs, (nh + ng) * hs + (rank + 1) * ng_r * hs)
        _keep_rows(attn.qkv, [q, k, v])
        _keep_columns(attn.proj, q, rank)
        mine = (rank * size_r, (rank + 1) * size_r)
        for name in ("fc", "fc_1", "fc_2"):
            if hasattr(mlp, name):
                _keep_rows(getattr(mlp, name), [mine])
        _keep_columns(mlp.proj, mine, rank)
        attn.config = local
        for module in (attn, mlp):
            module.register_forward_hook(partial(_all_reduce_output, group))
    model.config = local
    return model


def _keep_rows(linear: "nn.Linear", spans: list) -> None:
    """A column-parallel layer: the output features in `spans` ((start, stop) pairs), concatenated."""
    import torch
    import torch.nn as nn

    weight = torch.cat([linear.weight.detach()[a:b] for a, b in spans])
    linear.weight = nn.Parameter(weight, requires_grad=False)
    if linear.bias is not None:
        linear.bias = nn.Parameter(torch.cat([linear.bias.detach()[a:b] for a, b in spans]), requires_grad=False)
    linear.out_features = weight.size(0)


def _keep_columns(linear: "nn.Linear", span: tuple, rank: int) -> None:
    """A row-parallel layer: the input features in `span`; the bias is added once, by rank 0, before the sum."""
    import torch.nn as nn

    weight = linear.weight.detach()[:, span[0] : span[1]].contiguous()
    linear.weight = nn.Parameter(weight, requires_grad=False)
    if linear.bias is not None and rank != 0:
        linear.bias = None
    linear.in_features = weight.size(1)


def _all_reduce_output(group: Any, module: Any, args: tuple, output: "torch.Tensor") -> "torch.Tensor":
    import torch.distributed as dist

    dist.all_reduce(output, group=group)
    return output


def load_tp(
    checkpoint_dir: Path, rank: int, world_size: int, device: "torch.device", precision: Optional[str] = None, quantize: Quantize = None
) -> "GPT":
    """This rank's slice of a checkpoint folder's GPT, in eval mode on `device` (call in an initialised process group).

    The model is built on the meta device and given the memory-mapped weights; only this rank's slices and the
    replicated layers are read and copied to `device`.
    """
    import torch

    from litgpt.checkpoint import load_state_dict, model_state_dict, precision_dtype
    from litgpt.config import Config
    from litgpt.model import GPT
    from litgpt.quantize import check_quantize, quantize_linears

    checkpoint_dir = Path(checkpoint_dir)
    config = Config.from_checkpoint(checkpoint_dir)
    check_tp(config, world_size)
    dtype = precision_dtype(precision, device)
    with torch.device("meta"):
        model = GPT(config)
    model.load_state_dict(model_state_dict(load_state_dict(checkpoint_dir / "lit_model.pth")), assign=True)
    model.reset_parameters()  # the RoPE cache, on the CPU beside the weights
    apply_tp(model, rank, world_size)
    if quantize is not None:
        check_quantize(quantize, device)
        model = quantize_linears(model.to(dtype=dtype), quantize, dtype)
        return model.to(device).eval()
    return model.to(device=device, dtype=dtype).eval()

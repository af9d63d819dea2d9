"""Fused training kernels from liger-kernel for the model's RMSNorm, SwiGLU MLP and RoPE, on CUDA.

`use_fused_kernels(model, device)` replaces, in place, each module that liger computes exactly as we do by one
that calls liger's Triton kernel and holds the same Parameter objects (or, for the MLP, the same linear layers,
LoRA-wrapped or not): state-dict keys, checkpoints, the optimizer's parameters and what trains stay as they were.

    RMSNorm (weight or Gemma's 1 + weight, all in float32)  ─► liger RMSNorm, casting_mode "gemma", offset 0 or 1
    LLaMAMLP: proj(silu(fc_1(x)) * fc_2(x))                 ─► proj(liger SiLU-mul(fc_1(x), fc_2(x)))
    RoPE of the whole head (rope_n_elem == head_size)        ─► liger RoPE (cos, sin as [freqs, freqs], per row)

Everything else stays as it is: LayerNorm, GELU MLPs (GptNeoX, Gemma's GeGLU), partial rotary embeddings, a
mixture of experts' router (its experts are LLaMAMLPs and fuse). The fused linear + cross-entropy is our own
(`litgpt.loss`) and used everywhere, fused kernels or not.

Only a model that runs eagerly is fused. Under torch.compile inductor fuses these operations itself, and liger's
kernels traced by dynamo gave wrong gradients (torch 2.11, H200, bf16-mixed: the RMSNorm weights' gradient off by
100%; tests/train/test_fused_kernels_cuda.py), so a compiled model never gets them, whatever the switch says.
`LITGPT_FUSED_KERNELS=0` turns fusing off; a comma list (`rms_norm,swiglu,rope`) fuses only those. liger-kernel is
imported here only, when fusing on CUDA (or on CPU tensors under TRITON_INTERPRET=1, how the tests run Triton
without a GPU); never on the CPU path or for `litgpt --help`.
"""

import importlib.util
import os
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn

from litgpt.model import LLaMAMLP, RMSNorm, RoPE, apply_rope

ENV = "LITGPT_FUSED_KERNELS"
KERNELS = ("rms_norm", "swiglu", "rope")
LABELS = {"rms_norm": "RMSNorm", "swiglu": "SwiGLU", "rope": "RoPE"}


class FusedRMSNorm(nn.Module):
    """liger's RMSNorm over `norm`'s own weight Parameter: float32 inside, x's dtype out, like `rms_norm`."""

    def __init__(self, norm: RMSNorm, kernel: Callable) -> None:
        super().__init__()
        self.weight = norm.weight
        self.eps = norm.eps
        self.add_unit_offset = norm.add_unit_offset
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # not in place: the incoming gradient may be the residual's too (a post-norm's output is added to x)
        return self.kernel(x, self.weight, self.eps, 1.0 if self.add_unit_offset else 0.0, "gemma", False)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)


class FusedSwiGLU(nn.Module):
    """`LLaMAMLP` with silu(fc_1(x)) * fc_2(x) in one kernel; holds the MLP's own fc_1, fc_2 and proj."""

    def __init__(self, mlp: LLaMAMLP, kernel: Callable) -> None:
        super().__init__()
        self.fc_1, self.fc_2, self.proj = mlp.fc_1, mlp.fc_2, mlp.proj
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.kernel(self.fc_1(x), self.fc_2(x)))


class FusedRoPE(nn.Module):
    """`RoPE` of the whole head in one kernel for q and k; cos and sin may differ per row (packed samples)."""

    def __init__(self, rope: RoPE, kernel: Callable) -> None:
        super().__init__()
        self.n_elem = rope.n_elem
        self.kernel = kernel

    def forward(self, q, k, cos, sin):
        if q.size(2) == 1:
            # one position (a decode step of a validation sample): liger's kernel steps from row to row by the stride
            # of the position dimension, which PyTorch leaves arbitrary at size 1 (wrong rows for a batch of several)
            return apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return self.kernel(q, k, cos, sin)


FUSED = {"rms_norm": FusedRMSNorm, "swiglu": FusedSwiGLU, "rope": FusedRoPE}


def requested(compiling: bool = False) -> List[str]:
    """The kernels `LITGPT_FUSED_KERNELS` asks for a model that runs eagerly: 1 or unset → all, 0 → none, or a
    comma list of names (checked even when `compiling`); none for a compiled model (see the module's docstring)."""
    value = os.environ.get(ENV, "1").strip()
    if value in ("", "1"):
        names = list(KERNELS)
    elif value == "0":
        names = []
    else:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in KERNELS]
        if unknown:
            raise ValueError(f"LITGPT_FUSED_KERNELS={value}: unknown kernel {', '.join(unknown)}; use 0 (none), 1 (all) or a "
                             f"comma list of {', '.join(KERNELS)}")
    return [] if compiling else names


def can_run(device: torch.device) -> bool:
    """Whether liger's Triton kernels run on `device`: CUDA, or CPU tensors under Triton's interpreter."""
    return device.type == "cuda" or (device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")


def use_fused_kernels(model: nn.Module, device: torch.device, compiling: bool = False) -> List[str]:
    """Swap the modules of `model` that liger-kernel fuses exactly for modules that call its kernels (in place, before
    torch.compile and Fabric's setup). Returns what was fused, e.g. ["RMSNorm ×45", "SwiGLU ×22", "RoPE ×22"]; [] on
    CPU, with `LITGPT_FUSED_KERNELS=0` (or unset and `compiling`), without liger-kernel, or when nothing in the
    model fits."""
    names = requested(compiling)
    if not names or not can_run(device) or importlib.util.find_spec("liger_kernel") is None:
        return []
    try:
        from liger_kernel.transformers.functional import liger_rms_norm, liger_rope, liger_swiglu
    except ImportError as e:  # installed but broken (e.g. built for another torch or Triton): say so, do not guess
        raise ValueError(f"liger-kernel is installed but does not import ({e}): pip install -U liger-kernel, or set "
                         f"LITGPT_FUSED_KERNELS=0 to train without fused kernels") from None

    kernels = {"rms_norm": liger_rms_norm, "swiglu": liger_swiglu, "rope": liger_rope}
    counts: Dict[str, int] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            kind = _fusable(child, model)
            if kind in names:
                setattr(parent, name, FUSED[kind](child, kernels[kind]))
                counts[kind] = counts.get(kind, 0) + 1
    return [f"{LABELS[kind]} ×{counts[kind]}" for kind in KERNELS if kind in counts]


def _fusable(module: nn.Module, model: nn.Module) -> Optional[str]:
    """Which kernel computes `module` exactly, if one does (exact types: subclasses such as GemmaMLP differ)."""
    if type(module) is RMSNorm:
        return "rms_norm"
    if type(module) is LLaMAMLP:  # SiLU; GemmaMLP (GELU) is a subclass and stays
        return "swiglu"
    if type(module) is RoPE:
        # liger turns the head as two halves by cos, sin laid out [freqs, freqs], as ours are; a partial rotary
        # embedding (rope_n_elem < head_size) stays ours: liger's RoPE took a rotary width only in recent releases
        config = model.config
        return "rope" if module.n_elem == config.head_size and module.n_elem % 2 == 0 else None
    return None


def describe(fused: List[str], compiling: bool = False) -> str:
    """The start-up line on CUDA: which kernels are fused, or why none is."""
    if fused:
        return "Fused kernels (liger-kernel): " + ", ".join(fused)
    if not requested(compiling):
        if compiling:
            return "Fused kernels: torch.compile's (liger-kernel's are used only without compiling: --compile false)"
        return f"Fused kernels: none ({ENV}=0)"
    if importlib.util.find_spec("liger_kernel") is None:
        return "Fused kernels: none, liger-kernel is not installed (pip install liger-kernel)"
    kinds = {"rms_norm": "RMSNorm", "swiglu": "SiLU-gated MLP", "rope": "RoPE of the whole head"}
    return "Fused kernels: none, this model has no " + " or ".join(kinds[name] for name in requested(compiling))

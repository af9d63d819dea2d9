"""Next-token cross-entropy computed from the final hidden states, a block of rows at a time.

Full logits are big: 16 sequences of 2,048 tokens over a 128k vocabulary are 4 G values, 16 GiB in fp32 and as
much again for their gradient. Here the head's matmul, the softmax and the gradient are done per block of rows
in the forward pass, and only the gradients with respect to the hidden states (and the head's weight, when it
trains) are kept for the backward pass. The FLOPs are the same as the plain head + `cross_entropy`, with
logits in fp32 one block at a time.
"""

from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

BLOCK_BYTES = 1 << 30  # fp32 logits of one block of rows


def linear_cross_entropy(
    x: torch.Tensor, head: nn.Module, targets: torch.Tensor, ignore_index: int = -100, softcap: Optional[float] = None
) -> torch.Tensor:
    """Mean cross-entropy of `head(x)` (optionally soft-capped) against `targets`, skipping `ignore_index`.

    Args:
        x: hidden states (N, n_embd).
        head: the output layer. A plain `nn.Linear`, or a layer whose `linear_parts(x)` gives its output as a sum
            of matmuls (LoRA), takes the fused path; any other (quantized) runs in blocks whose logits are
            recomputed in the backward pass.
        targets: (N,) token ids.
    """
    if torch.compiler.is_compiling():
        # the loss is a graph of its own: traced into the model's graph, the partition between forward and backward
        # kept much more of the layers' activations (LoRA on Llama-3.2-1B at 8 x 2048 on an H200: 56.5 GiB, against
        # 38.4 GiB and 2% more tokens/s as two graphs; pretraining tiny-llama-1.1b: 83.2k against 84.2k tokens/s)
        torch._dynamo.graph_break()
    rows = max(1, BLOCK_BYTES // (4 * _out_features(head)))
    n_valid = (targets != ignore_index).sum()
    parts = _linear_parts(head, x)
    if parts is not None:
        pairs, bias = parts
        tensors = [t for pair in pairs for t in pair] + [bias]
        needs = tuple(torch.is_grad_enabled() and t is not None and t.requires_grad for t in tensors)
        total = _FusedLinearCrossEntropy.apply(targets, ignore_index, softcap, rows, needs, *tensors)
    else:
        total = sum(
            checkpoint(_block_loss, head, xb, tb, ignore_index, softcap, use_reentrant=False)
            for xb, tb in zip(x.split(rows), targets.split(rows))
        )
    return total / n_valid.clamp(min=1)


LinearParts = Tuple[List[Tuple[torch.Tensor, torch.Tensor]], Optional[torch.Tensor]]


def _linear_parts(head: nn.Module, x: torch.Tensor) -> Optional[LinearParts]:
    """[(input, weight), ...] and a bias such that head(x) = sum(input @ weight.T) + bias, when the head is linear."""
    if type(head) is nn.Linear and head.weight.dtype.is_floating_point:
        return [(x, head.weight)], head.bias
    linear_parts = getattr(head, "linear_parts", None)
    return None if linear_parts is None else linear_parts(x)


def _out_features(head: nn.Module) -> int:
    return getattr(head, "out_features", None) or head.weight.shape[0]


def _block_loss(head: nn.Module, x: torch.Tensor, targets: torch.Tensor, ignore_index: int, softcap: Optional[float]) -> torch.Tensor:
    logits = head(x).float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.nn.functional.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum")


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Sum over rows of cross-entropy(sum_i x_i @ w_i.T + bias); the gradients are computed in the forward pass.

    Inputs after the settings: x_1, w_1, x_2, w_2, ..., bias (or None); `needs` says which of them want a gradient.
    """

    @staticmethod
    def forward(ctx, targets, ignore_index, softcap, rows, needs, *tensors):
        *flat, bias = tensors
        pairs = list(zip(flat[0::2], flat[1::2]))
        x0 = pairs[0][0]
        device_type = x0.device.type
        # under autocast the matmuls run in its dtype, as the plain head's would
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else pairs[0][1].dtype
        with torch.autocast(device_type, enabled=False):
            cast = [(x.to(dtype), w.to(dtype)) for x, w in pairs]
            b = None if bias is None else bias.to(dtype)
            total = torch.zeros((), dtype=torch.float32, device=x0.device)
            grads = [
                (torch.empty_like(xc) if needs[2 * i] else None, torch.zeros_like(w, dtype=torch.float32) if needs[2 * i + 1] else None)
                for i, ((xc, _), (_, w)) in enumerate(zip(cast, pairs))
            ]
            grad_b = torch.zeros_like(bias, dtype=torch.float32) if needs[-1] else None
            for start in range(0, x0.size(0), rows):
                end = start + rows
                z = sum(xc[start:end] @ wc.t() for xc, wc in cast)
                if b is not None:
                    z = z + b
                loss, grad_z = _block(z, targets[start:end], ignore_index, softcap, any(needs))
                # out of place: the returned tensor mutated in place made every gradient zero under torch.compile
                # (torch 2.11: traced, the backward's inputs came out as zeros), so no compiled run learned
                total = total + loss
                if grad_z is None:
                    continue
                grad_z = grad_z.to(dtype)
                for (xc, wc), (grad_x, grad_w) in zip(cast, grads):
                    if grad_x is not None:
                        grad_x[start:end] = grad_z @ wc
                    if grad_w is not None:
                        grad_w += (grad_z.t() @ xc[start:end]).float()
                if grad_b is not None:
                    grad_b += grad_z.sum(0).float()
        flat_grads = [g for pair in grads for g in pair] + [grad_b]
        ctx.has = [g is not None for g in flat_grads]
        ctx.dtypes = [None if t is None else t.dtype for t in tensors]
        ctx.save_for_backward(*(g for g in flat_grads if g is not None))
        return total

    @staticmethod
    def backward(ctx, grad_total):
        saved = iter(ctx.saved_tensors)
        grads = [(next(saved) * grad_total).to(dtype) if has else None for has, dtype in zip(ctx.has, ctx.dtypes)]
        return (None, None, None, None, None, *grads)


def _block(
    z: torch.Tensor, targets: torch.Tensor, ignore_index: int, softcap: Optional[float], needs_grad: bool
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Summed loss of one block of rows of pre-cap logits `z`, and (if needed) its gradient with respect to `z`."""
    z = z.float()  # (rows, V)
    logits = z if softcap is None else torch.tanh(z / softcap) * softcap
    valid = targets != ignore_index
    safe = torch.where(valid, targets, 0).unsqueeze(1)
    lse = logits.logsumexp(-1)
    loss = ((lse - logits.gather(1, safe).squeeze(1)) * valid).sum()
    if not needs_grad:
        return loss, None
    grad = (logits - lse.unsqueeze(1)).exp_()  # softmax
    grad.scatter_add_(1, safe, torch.full_like(safe, -1, dtype=grad.dtype))
    grad *= valid.unsqueeze(1)
    if softcap is not None:
        grad *= 1 - (logits / softcap) ** 2  # d tanh
    return loss, grad

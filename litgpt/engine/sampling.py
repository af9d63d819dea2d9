"""Turning next-token logits into tokens: top-k, then temperature, then top-p (nucleus) sampling."""

from typing import Optional

import torch

# Temperatures below float32's smallest normal number sample as greedy: float32 holds them only roughly (1e-40)
# or as 0 (1e-46), and 0/0 would make the most likely token's logit nan.
GREEDY_BELOW = torch.finfo(torch.float32).tiny


def is_greedy(temperature: float, top_k: Optional[int]) -> bool:
    return temperature < GREEDY_BELOW or top_k == 1


def check_sampling_args(temperature: float, top_k: Optional[int], top_p: float) -> None:
    """Raise ValueError for settings no sampler accepts."""
    from litgpt.settings_check import check_generation

    check_generation(temperature, top_k, top_p)


def probabilities(
    logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None, top_p: float = 1.0
) -> torch.Tensor:
    """The distribution (B, V) that `sample` draws from, given logits (B, V); one-hot when greedy."""
    check_sampling_args(temperature, top_k, top_p)
    logits = logits.float()
    if is_greedy(temperature, top_k):
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.size(-1)).float()
    if top_k is not None and top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    # shifted so that the largest is 0: a small temperature then sends the others to -inf instead of overflowing
    # every logit to inf (whose softmax is nan); softmax itself does not change under the shift
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(dim=-1)
        # drop a token once the more likely ones already reach top_p; the most likely token always stays
        drop_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= top_p
        drop_sorted[..., 0] = False
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return logits.softmax(dim=-1)


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: float = 1.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Next tokens (B,) from logits (B, V); temperature 0 (or top_k 1) is greedy."""
    if is_greedy(temperature, top_k):
        check_sampling_args(temperature, top_k, top_p)
        return logits.argmax(dim=-1)
    probs = probabilities(logits, temperature, top_k, top_p)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)

"""Turning next-token logits into tokens: top-k, then temperature, then top-p (nucleus) sampling."""

from typing import Optional, Sequence, Tuple

import torch

# What a batch samples with, on the device: None when every row is greedy, else (settings (B, 4) as
# `RowSettings.tensor` gives them, the width `sample_with` reads, uniform numbers (B,))
Sampling = Optional[Tuple[torch.Tensor, int, torch.Tensor]]

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
    """Next tokens (B,) from logits (B, V); temperature 0 (or top_k 1) is greedy.

    One uniform number per row from `generator` (torch's global one if None) picks the token (`sample_rows`), the
    same draw the server makes for a request with a seed: both give the same tokens for the same seed."""
    check_sampling_args(temperature, top_k, top_p)
    if is_greedy(temperature, top_k):
        return logits.argmax(dim=-1)
    B = logits.size(0)
    uniform = torch.rand(B, generator=generator, device=logits.device)
    return sample_rows(logits, [temperature] * B, [top_k] * B, [top_p] * B, uniform)


def sample_rows(
    logits: torch.Tensor,
    temperature: Sequence[float],
    top_k: Sequence[Optional[int]],
    top_p: Sequence[float],
    uniform: torch.Tensor,
) -> torch.Tensor:
    """Next tokens (B,) of a batch whose rows each have their own settings, in one go on the logits' device.

    Row i keeps its top_k[i] most likely tokens (None: all), scales by temperature[i] (below `GREEDY_BELOW`:
    greedy), keeps the nucleus of top_p[i], and picks the token where uniform[i] (in [0, 1)) falls in the
    cumulative distribution. No host synchronisation: a server reads all rows' tokens with one transfer.
    """
    settings = RowSettings(temperature, top_k, top_p, logits.size(-1))
    return sample_with(logits, settings.tensor(logits.device), settings.width, uniform)


class RowSettings:
    """Rows' sampling settings as `sample_with` reads them: `rows` of [top_k, temperature, top_p, greedy] (top_k
    capped at the vocabulary, the temperature at least `GREEDY_BELOW`), `widths`, how many of the most likely tokens
    each row's draw looks at (1 for a greedy row; else its top_k rounded up to a power of two, at most the
    vocabulary: the decode step's CUDA graph is captured once per width, and top_k 40 and 50 share one), and
    `width`, their largest. Looking at more tokens than top_k changes nothing: the draw masks those past it."""

    def __init__(self, temperature: Sequence[float], top_k: Sequence[Optional[int]], top_p: Sequence[float], vocab: int) -> None:
        self.greedy = [is_greedy(t, k) for t, k in zip(temperature, top_k)]
        ks = [vocab if k is None else min(int(k), vocab) for k in top_k]
        self.rows = [[float(k), max(t, GREEDY_BELOW), p, float(g)] for k, t, p, g in zip(ks, temperature, top_p, self.greedy)]
        self.widths = [1 if g else min(vocab, 1 << (k - 1).bit_length()) for g, k in zip(self.greedy, ks)]
        self.width = max(self.widths, default=1)

    def tensor(self, device: torch.device) -> torch.Tensor:
        """(B, 4) on `device`, copied without waiting for the device's queue."""
        return to_device(torch.tensor(self.rows, dtype=torch.float32), device)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host `tensor` on `device`; to a GPU through pinned memory, without waiting for the device's queue (a plain
    copy from pageable memory waits for every kernel queued before it)."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def sample_with(logits: torch.Tensor, settings: torch.Tensor, width: int, uniform: torch.Tensor) -> torch.Tensor:
    """`sample_rows` with the settings already on the device (`RowSettings.tensor`, (B, 4)) and `width` the most
    likely tokens any row may pick from."""
    # chosen in the logits' own dtype (float32 would hold bf16/fp16 values exactly: the same tokens), sparing a
    # float32 copy of the whole vocabulary every step; only the K kept are converted
    if width < logits.size(-1):
        values, indices = logits.topk(width, dim=-1)  # (B, K), most likely first
    else:
        values, indices = logits.sort(dim=-1, descending=True)
    return draw(values, indices, settings, uniform)


def draw(values: torch.Tensor, indices: torch.Tensor, settings: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """`sample_with` after its top-k: each row's token (B,) from its K most likely `values` (B, K, most likely first)
    and their token ids `indices`."""
    values = values.float()
    K = values.size(-1)
    k, temp, p, is_g = settings.unbind(-1)
    position = torch.arange(K, device=values.device)
    values = values.masked_fill(position >= k[:, None], float("-inf"))
    probs = ((values - values[:, :1]) / temp[:, None]).softmax(dim=-1)  # shifted: no overflow at tiny temperatures
    # the nucleus: drop a token once the more likely ones reach top_p; the most likely always stays
    probs = probs.masked_fill(((probs.cumsum(dim=-1) - probs) >= p[:, None]) & (p[:, None] < 1.0), 0.0)
    cdf = probs.cumsum(dim=-1)
    target = uniform.to(device=values.device, dtype=cdf.dtype)[:, None] * cdf[:, -1:]
    choice = torch.searchsorted(cdf, target, right=True).clamp_(max=K - 1)  # (B, 1)
    choice = choice.masked_fill(is_g[:, None].bool(), 0)
    return indices.gather(-1, choice).squeeze(-1)


def choose(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """Next tokens (B,) from logits (B, V): the argmax when `sampling` is None (every row greedy), else `sample_with`."""
    if sampling is None:
        return logits.argmax(dim=-1)
    settings, width, uniform = sampling
    return sample_with(logits, settings, width, uniform)

"""The one generation loop: prefill the prompts into the KV cache, then decode one token per step.

Chat, `generate`, the Python API, serving and evaluation all decode through `generate_batch` (or its
one-prompt form `generate_tokens`); speculative decoding reuses its pieces (`prefill`, `StopWatcher`).

Prompts of different lengths share one batch without padding tricks: each row is fed at its own positions
(input_pos of shape (B, T)). A shorter row's padding lands in cache slots after its prompt, which the
causal mask hides and its own next tokens overwrite, so every row decodes exactly as it would alone.
"""

from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from litgpt.generate.sampling import check_sampling_args, sample
from litgpt.model import GPT

StopSequences = Iterable[Union[int, Sequence[int]]]
# (model, tokens (B, T), positions (B, T), input_pos_maxp1) -> logits of the last position (B, V)
DecodeStep = Callable[[GPT, torch.Tensor, torch.Tensor, Optional[int]], torch.Tensor]


def decode_step(model: GPT, tokens: torch.Tensor, positions: torch.Tensor, input_pos_maxp1: Optional[int]) -> torch.Tensor:
    """Logits (B, V) after feeding `tokens` (B, T) at `positions` (B, T) through the KV cache."""
    return model(tokens, positions, input_pos_maxp1=input_pos_maxp1)[:, -1]


def compiled_decode_step(**compile_options: Any) -> DecodeStep:
    """`decode_step` under `torch.compile(**compile_options)`; it attends over the whole cache so that shapes stay fixed."""
    compiled = torch.compile(lambda model, tokens, positions: model(tokens, positions)[:, -1], **{"dynamic": False, **compile_options})

    def step(model: GPT, tokens: torch.Tensor, positions: torch.Tensor, input_pos_maxp1: Optional[int]) -> torch.Tensor:
        return compiled(model, tokens, positions)

    return step


def kv_cache_shape(model: GPT) -> Optional[Tuple[int, int]]:
    """(batch size, length) of the model's KV cache, None if it has none."""
    cache = model.transformer.h[0].attn.kv_cache
    return None if cache is None else (cache.k.size(0), cache.k.size(2))


def ensure_kv_cache(model: GPT, batch_size: int, length: int, multiple: int = 1) -> bool:
    """Give the model a KV cache for at least `batch_size` rows of `length` tokens; True if it made a new one.

    A new cache is rounded up to `multiple` tokens (at most the model's max_seq_length) to spare later resizes.
    """
    if length > model.max_seq_length:
        raise ValueError(f"{length} tokens do not fit the model's context of {model.max_seq_length} tokens")
    shape = kv_cache_shape(model)
    if shape is not None and shape[0] >= batch_size and shape[1] >= length:
        return False
    length = min(model.max_seq_length, -(-length // multiple) * multiple)
    model.set_kv_cache(batch_size=batch_size, max_seq_length=length)
    return True


def prefill(model: GPT, prompts: Sequence[torch.Tensor], start: int = 0) -> torch.Tensor:
    """Feed `prompts[i][start:]` (rows of any length) through the KV cache; the logits (B, V) after each row's last token.

    The first `start` tokens of every prompt must already be in the cache at positions 0..start-1.
    """
    lengths = [int(p.numel()) for p in prompts]
    if min(lengths) <= start:
        raise ValueError(f"Every prompt needs a token after the {start} cached ones")
    T = max(lengths)
    device = prompts[0].device
    tokens = torch.zeros(len(prompts), T - start, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        tokens[row, : lengths[row] - start] = prompt.reshape(-1)[start:]
    positions = torch.arange(start, T, device=device).expand(len(prompts), -1)
    logits = model(tokens, positions, input_pos_maxp1=T)  # (B, T - start, V)
    last = torch.tensor(lengths, device=device) - 1 - start
    return logits[torch.arange(len(prompts), device=device), last]


class StopWatcher:
    """Releases one row's tokens, holding back those that may begin a stop sequence, until one completes.

    Args:
        stop_tokens: stop sequences (tuples of ids; a bare int is a one-token sequence).
        include_stop: release the completed stop sequence too.
    """

    def __init__(self, stop_tokens: StopSequences = (), include_stop: bool = False) -> None:
        self.sequences = [tuple(s) if isinstance(s, (list, tuple)) else (int(s),) for s in stop_tokens]
        self.sequences = [s for s in self.sequences if s]
        self.longest = max((len(s) for s in self.sequences), default=0)
        self.include_stop = include_stop
        self.held: List[int] = []
        self.stopped = False

    def push(self, token: int) -> List[int]:
        """Add a generated token; the tokens now safe to show."""
        self.held.append(token)
        for sequence in self.sequences:
            if tuple(self.held[-len(sequence) :]) == sequence:
                self.stopped = True
                released = self.held if self.include_stop else self.held[: -len(sequence)]
                self.held = []
                return released
        # keep the longest tail of held tokens that is still a prefix of some stop sequence
        keep = 0
        for n in range(min(len(self.held), self.longest - 1), 0, -1):
            tail = tuple(self.held[-n:])
            if any(s[:n] == tail for s in self.sequences):
                keep = n
                break
        released, self.held = self.held[: len(self.held) - keep], self.held[len(self.held) - keep :]
        return released

    def flush(self) -> List[int]:
        """The held-back tokens, at the end of generation without a stop."""
        released, self.held = self.held, []
        return released


@torch.inference_mode()
def generate_batch(
    model: GPT,
    prompts: Sequence[torch.Tensor],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: float = 1.0,
    stop_tokens: StopSequences = (),
    include_stop: bool = False,
    generator: Optional[torch.Generator] = None,
    cached: int = 0,
    step: DecodeStep = decode_step,
) -> Iterator[List[List[int]]]:
    """Generate for several 1-D prompts at once; each step yields, per row, the token ids released by that step.

    A row stops after one of `stop_tokens` (not yielded unless `include_stop`) or `max_new_tokens` tokens;
    the loop ends when every row has. The model's KV cache must hold `len(prompts)` rows of
    `max(len(prompt)) + max_new_tokens` positions (`ensure_kv_cache`).

    Args:
        cached: leading prompt tokens (shared by all rows) already in the KV cache from an earlier call.
        step: the decode step, e.g. `compiled_decode_step()`.
    """
    check_sampling_args(temperature, top_k, top_p)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    B = len(prompts)
    lengths = torch.tensor([int(p.numel()) for p in prompts])
    needed = int(lengths.max()) + max_new_tokens - 1  # the last token is sampled, never fed
    shape = kv_cache_shape(model)
    if shape is None or shape[0] < B or shape[1] < needed:
        raise ValueError(
            f"The prompt ({int(lengths.max())} tokens) plus max_new_tokens ({max_new_tokens}) needs a KV cache of "
            f"{B} x {needed} positions; the model has {shape or 'none'} (see ensure_kv_cache)"
        )
    watchers = [StopWatcher(stop_tokens, include_stop) for _ in range(B)]
    logits = prefill(model, prompts, start=min(cached, int(lengths.min()) - 1))
    positions = lengths.to(prompts[0].device).view(B, 1)  # where each row's next token goes
    for i in range(max_new_tokens):
        tokens = sample(logits, temperature, top_k, top_p, generator)  # (B,)
        released = []
        for row, token in enumerate(tokens.tolist()):
            watcher = watchers[row]
            released.append([] if watcher.stopped else watcher.push(token))
        last_step = i == max_new_tokens - 1 or all(w.stopped for w in watchers)
        if last_step:
            released = [r + w.flush() for r, w in zip(released, watchers)]
        yield released
        if last_step:
            return
        logits = step(model, tokens.view(B, 1), positions, int(positions.max()) + 1)
        positions = positions + 1


def generate_tokens(
    model: GPT,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: float = 1.0,
    stop_tokens: StopSequences = (),
    include_stop: bool = False,
    generator: Optional[torch.Generator] = None,
    cached: int = 0,
    step: DecodeStep = decode_step,
) -> Iterator[int]:
    """Yield the new token ids for one 1-D `prompt`: `generate_batch` with one row."""
    for released in generate_batch(
        model,
        [prompt],
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        stop_tokens=stop_tokens,
        include_stop=include_stop,
        generator=generator,
        cached=cached,
        step=step,
    ):
        yield from released[0]

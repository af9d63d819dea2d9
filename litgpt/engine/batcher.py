"""Continuous batching: sequences join and leave the running batch between decode steps.

    submit ─► waiting ─► (a row is free) prefill into that KV-cache row ─► one token per step with the others ─► done

`Batcher` owns the model's KV cache: `max_batch_size` rows, each holding one sequence at its own positions
(the core's per-row `input_pos`). Each `step()` first prefills newly admitted sequences into free rows (the
running ones wait that one forward), then decodes one token for every running sequence. A finished sequence
frees its row by moving the last running row into it, so running rows are always rows 0..n-1, which is what the
model's KV cache feeds. Every row decodes as it would alone: stale cache slots past a row's position are
hidden by the causal mask and overwritten before they are read.

`BackgroundBatcher` runs a `Batcher` on a thread of its own for servers; evaluation drives one directly.
Prefill, decode step, sampling and stop handling are the generation core's (`prefill`, `decode_step`,
`sample`, `StopWatcher`).
"""

import queue
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Deque, Iterator, List, Optional, Sequence

import torch

from litgpt.engine.core import DecodeStep, StopSequences, StopWatcher, ensure_kv_cache, fast_decode_step, kv_cache_shape, prefill
from litgpt.engine.sampling import check_sampling_args, is_greedy, sample_rows
from litgpt.model import GPT, KVCache


@dataclass(eq=False)
class Generation:
    """One generation request and its progress.

    Args:
        prompt: the 1-D token ids to continue.
        max_new_tokens: the most tokens to generate.
        temperature, top_k, top_p: sampling settings, as in `sample`.
        stop_tokens: token sequences that end generation (not released).
        generator: the random generator for sampling; None uses torch's global one.
        on_update: called (from the batcher's thread) with the sequence and the token ids that a step released,
            whenever there are some or the sequence has finished. It must be quick; it may call `cancel()`.
    """

    prompt: torch.Tensor
    max_new_tokens: int
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: float = 1.0
    stop_tokens: StopSequences = ()
    generator: Optional[torch.Generator] = None
    on_update: Optional[Callable[["Generation", List[int]], None]] = None
    # progress, for the consumer
    tokens: List[int] = field(default_factory=list, init=False)  # every id released so far
    done: bool = field(default=False, init=False)
    finish_reason: Optional[str] = field(default=None, init=False)  # "stop", "length", "cancelled" or "error"
    error: Optional[BaseException] = field(default=None, init=False, repr=False)
    # the batcher's bookkeeping
    _cancelled: bool = field(default=False, init=False, repr=False)
    _watcher: Optional[StopWatcher] = field(default=None, init=False, repr=False)
    _next_token: int = field(default=-1, init=False, repr=False)  # sampled, not yet fed to the model
    _position: int = field(default=0, init=False, repr=False)  # the cache slot that _next_token goes to
    _generated: int = field(default=0, init=False, repr=False)

    def cancel(self) -> None:
        """Stop generating; takes effect at the batcher's next step (safe from any thread)."""
        self._cancelled = True


class Batcher:
    """Schedules sequences onto a model's KV cache rows, admitting new ones between decode steps.

    Args:
        model: the GPT; the batcher replaces its KV cache as needed.
        max_batch_size: the most sequences decoded together (KV-cache rows).
        step: the decode step; default `fast_decode_step()` (CUDA graphs on GPUs).
        cache_multiple: KV-cache lengths are rounded up to this many positions to spare reallocations.
    """

    def __init__(self, model: GPT, max_batch_size: int, step: Optional[DecodeStep] = None, cache_multiple: int = 256) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.model = model
        self.max_batch_size = max_batch_size
        self.decode_step = step or fast_decode_step()
        self.cache_multiple = cache_multiple
        self.waiting: Deque[Generation] = deque()
        self.running: List[Generation] = []  # running[i] lives in KV-cache row i

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    def check(self, gen: Generation) -> None:
        """Raise ValueError if `gen` can never run: bad settings, or longer than the model's context."""
        check_sampling_args(gen.temperature, gen.top_k, gen.top_p)
        if gen.prompt.dim() != 1 or gen.prompt.numel() == 0:
            raise ValueError("The prompt must be a non-empty 1-D tensor of token ids")
        if gen.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {gen.max_new_tokens}")
        if gen.prompt.numel() + gen.max_new_tokens > self.model.max_seq_length:
            raise ValueError(
                f"The prompt ({gen.prompt.numel()} tokens) plus max_new_tokens ({gen.max_new_tokens}) exceeds the "
                f"model's context length ({self.model.max_seq_length} tokens)"
            )

    def add(self, gen: Generation) -> None:
        """Queue `gen`; it joins the running batch when a row is free."""
        self.check(gen)
        gen._watcher = StopWatcher(gen.stop_tokens)
        self.waiting.append(gen)

    @torch.inference_mode()
    def step(self) -> None:
        """Admit waiting sequences into free rows (prefilling them), then decode one token for each running one."""
        try:
            self._remove([row for row, gen in enumerate(self.running) if gen._cancelled], "cancelled")
            self._admit()
            if self.running:
                self._decode()
        except Exception as error:  # e.g. out of memory: fail what was in flight, keep serving the rest later
            for gen in self.running:
                self._finish(gen, [], "error", error)
            self.running = []
            raise

    def run(self) -> None:
        """Step until every queued sequence has finished."""
        while self.busy:
            self.step()

    def _admit(self) -> None:
        new: List[Generation] = []
        while self.waiting and len(self.running) + len(new) < self.max_batch_size:
            gen = self.waiting.popleft()
            if gen._cancelled:
                self._finish(gen, [], "cancelled")
            else:
                new.append(gen)
        if not new:
            return
        # every row needs its prompt plus all but the last new token in the cache
        needed = max(s.prompt.numel() + s.max_new_tokens - 1 for s in self.running + new)
        self._ensure_cache(needed)
        first = len(self.running)
        device = self.model.lm_head.weight.device
        try:
            with _cache_rows(self.model, first, first + len(new)):
                # eager: the rows' cache views are new objects each time, which a compiled prefill would recompile for
                logits = prefill(self.model, [s.prompt.to(device) for s in new])  # (len(new), V)
        except Exception as error:
            for gen in new:
                self._finish(gen, [], "error", error)
            raise
        self.running.extend(new)
        for gen in new:
            gen._position = gen.prompt.numel()
        self._advance(first, logits)

    def _decode(self) -> None:
        device = self.model.lm_head.weight.device
        tokens = torch.tensor([[s._next_token] for s in self.running], device=device)  # (B, 1)
        positions = torch.tensor([[s._position] for s in self.running], device=device)  # (B, 1)
        logits = self.decode_step(self.model, tokens, positions, max(s._position for s in self.running) + 1)
        for gen in self.running:
            gen._position += 1
        self._advance(0, logits)

    def _advance(self, first: int, logits: torch.Tensor) -> None:
        """Sample the next token of rows first.. from their logits (B, V); release tokens, retire finished rows."""
        rows = self.running[first:]
        next_tokens = _sample_rows(logits, rows)
        finished = []
        for offset, (gen, token) in enumerate(zip(rows, next_tokens)):
            released = gen._watcher.push(token)
            gen._generated += 1
            gen._next_token = token
            if gen._watcher.stopped:
                finished.append((first + offset, released, "stop"))
            elif gen._generated == gen.max_new_tokens:
                finished.append((first + offset, released + gen._watcher.flush(), "length"))
            elif released:
                gen.tokens.extend(released)
                _notify(gen, released)
        for row, released, reason in finished:
            self._finish(self.running[row], released, reason)
        self._remove([row for row, _, _ in finished])

    def _finish(self, gen: Generation, released: List[int], reason: str, error: Optional[BaseException] = None) -> None:
        gen.tokens.extend(released)
        gen.done, gen.finish_reason, gen.error = True, reason, error
        _notify(gen, released)

    def _remove(self, rows: List[int], reason: Optional[str] = None) -> None:
        """Retire `rows` (finishing them with `reason` if given); the last running rows move into the gaps."""
        for row in sorted(rows, reverse=True):  # the last row is then never one still to remove
            if reason is not None:
                self._finish(self.running[row], [], reason)
            last = len(self.running) - 1
            if row != last:
                _copy_cache_row(self.model, last, row, self.running[last]._position)
                self.running[row] = self.running[last]
            self.running.pop()

    def _ensure_cache(self, length: int) -> None:
        """A KV cache of max_batch_size rows of at least `length` positions, keeping the running rows' contents."""
        shape = kv_cache_shape(self.model)
        if shape is not None and shape[0] >= self.max_batch_size and shape[1] >= length:
            return
        old = [(b.attn.kv_cache.k, b.attn.kv_cache.v) for b in self.model.transformer.h] if self.running else []
        ensure_kv_cache(self.model, self.max_batch_size, length, multiple=self.cache_multiple)
        n = len(self.running)
        for block, (k, v) in zip(self.model.transformer.h, old):
            cache = block.attn.kv_cache
            cache.k[:n, :, : k.size(2)] = k[:n]
            cache.v[:n, :, : v.size(2)] = v[:n]


class BackgroundBatcher:
    """Runs a `Batcher` on a daemon thread: `submit` from any thread; results come through `Generation.on_update`."""

    def __init__(self, batcher: Batcher) -> None:
        self.batcher = batcher
        self._inbox: "queue.SimpleQueue[Optional[Generation]]" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="litgpt-batcher", daemon=True)
        self._thread.start()

    def submit(self, gen: Generation) -> Generation:
        """Queue `gen`; raises ValueError here, in the caller's thread, if it can never run."""
        self.batcher.check(gen)
        self._inbox.put(gen)
        return gen

    def close(self) -> None:
        self._inbox.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            # block for work only when idle; otherwise take what has arrived and keep decoding
            for gen in _drain(self._inbox, block=not self.batcher.busy):
                if gen is None:
                    return
                self.batcher.add(gen)
            try:
                self.batcher.step()
            except Exception:  # the failed sequences were told (finish_reason "error"); keep serving
                pass


def stop_at_text(decode: Callable[[List[int]], str], stops: Sequence[str]) -> Callable[[Generation, List[int]], None]:
    """An `on_update` that cancels a generation once its decoded text contains one of the `stops` strings.

    Only the newest tokens are decoded: enough to hold a stop string that the latest step completed.
    """
    window = max(len(stop) for stop in stops) + 8  # a token is at least a character, bar special and partial ones

    def check(gen: Generation, released: List[int]) -> None:
        if not gen.done and released:
            tail = decode(gen.tokens[-(len(released) + window) :])
            if any(stop in tail for stop in stops):
                gen.cancel()

    return check


def cut_at_first(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first occurrence of any of `stops`."""
    return text[: min((text.find(stop) for stop in stops if stop and stop in text), default=len(text))]


def _drain(inbox: "queue.SimpleQueue[Optional[Generation]]", block: bool) -> Iterator[Optional[Generation]]:
    if block:
        yield inbox.get()
    while True:
        try:
            yield inbox.get_nowait()
        except queue.Empty:
            return


def _sample_rows(logits: torch.Tensor, rows: List[Generation]) -> List[int]:
    """Each row's next token from logits (B, V) under its own settings: one batched draw, one transfer to the host.

    A row with its own generator (a request with a seed) draws its uniform number from it, as `sample` does for
    `litgpt generate` with that seed; the other rows share one draw from torch's global generator."""
    if all(is_greedy(gen.temperature, gen.top_k) for gen in rows):
        return logits.argmax(dim=-1).tolist()
    uniform = torch.rand(len(rows), device=logits.device)
    for i, gen in enumerate(rows):
        if gen.generator is not None and not is_greedy(gen.temperature, gen.top_k):
            uniform[i : i + 1] = torch.rand(1, generator=gen.generator, device=logits.device)
    tokens = sample_rows(logits, [g.temperature for g in rows], [g.top_k for g in rows], [g.top_p for g in rows], uniform)
    return tokens.tolist()


def _notify(gen: Generation, released: List[int]) -> None:
    if gen.on_update is None:
        return
    try:
        gen.on_update(gen, released)
    except Exception:  # a broken consumer must not stop the other sequences
        gen.cancel()


@contextmanager
def _cache_rows(model: GPT, start: int, stop: int) -> Iterator[None]:
    """Let the model see KV-cache rows start..stop-1 as its whole cache (rows 0..), e.g. to prefill new sequences."""
    caches = [block.attn.kv_cache for block in model.transformer.h]
    try:
        for block, cache in zip(model.transformer.h, caches):
            view = KVCache(0, 1, 0, 1)  # an empty shell, then the rows as views of the real cache
            view.k, view.v = cache.k[start:stop], cache.v[start:stop]
            block.attn.kv_cache = view
        yield
    finally:
        for block, cache in zip(model.transformer.h, caches):
            block.attn.kv_cache = cache


def _copy_cache_row(model: GPT, source: int, target: int, length: int) -> None:
    """Copy the first `length` positions of KV-cache row `source` into row `target`, in every layer."""
    for block in model.transformer.h:
        cache = block.attn.kv_cache
        cache.k[target, :, :length] = cache.k[source, :, :length]
        cache.v[target, :, :length] = cache.v[source, :, :length]

"""The one token loop: sequences join and leave the running batch between decode steps.

    add ─► waiting ─► (a row is free) prefill into that KV-cache row ─► one token per step with the others ─► done

Every command that generates decodes here: `generate_batch` / `generate_tokens` (litgpt generate, chat, the
Python API's `LLM.generate` with one prompt, a list or `stream=True`, the training loop's samples) admit all their
prompts at once; the server (`BackgroundBatcher`) and `litgpt evaluate` admit sequences as rows free up.

`Batcher` owns the model's KV cache: `max_batch_size` rows, each holding one sequence at its own positions
(the core's per-row `input_pos`). A step queues the running rows' decode step on the device first, then reads
back the previous step's tokens (stop handling, releasing, retiring finished rows), then prefills newly admitted
sequences into free rows: the device works while the host keeps the books. A finished sequence frees its row by
moving the last running row into it, so running rows are always rows 0..n-1, which is what the model's KV cache
feeds. Every row decodes as it would alone: stale cache slots past a row's position are hidden by the causal mask
and overwritten before they are read. A sequence admitted while others run, whose prompt begins as a running
row's does (a system prompt, few-shot examples), copies that row's keys and values for the shared part and
prefills only the rest. A long prompt joining running rows is prefilled a chunk a step, between their decode
steps, into a cache of its own, so that they are not held up for the whole of it.

The pieces are the core's (`prefill`, the decode steps, `StopWatcher`) and the sampler's (`sample_with`).
"""

import queue
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import torch

from litgpt.engine.core import (
    DecodeStep,
    StopSequences,
    StopWatcher,
    decode_step,
    ensure_kv_cache,
    fast_decode_step,
    kv_cache_shape,
    prefill,
)
from litgpt.engine.sampling import RowSettings, Sampling, check_sampling_args, choose, to_device
from litgpt.model import GPT, KVCache

# A prefill of a few new rows costs the running rows about one decode step, most of it the host launching the
# forward's kernels, whatever the number of rows. Once many rows run, new sequences are admitted in groups of
# ADMIT_GROUP (or when the first has waited ADMIT_WAIT steps), not one prefill each.
ADMIT_GROUP = 8
ADMIT_WAIT = 4
ADMIT_ALONE_BELOW = 16  # fewer running rows than this: admit at once
# A new sequence whose prompt begins as a running row's does (a shared system prompt, few-shot examples) copies
# that row's keys and values for the shared part instead of computing them again, when they share at least
# REUSE_MIN tokens; prompts are matched in whole blocks of REUSE_BLOCK tokens.
REUSE_BLOCK = 16
REUSE_MIN = 64
# A prompt of more than PREFILL_CHUNK tokens still to compute, admitted while rows run, is prefilled PREFILL_CHUNK
# tokens a step, into a cache of its own, and joins when it is complete: the running rows wait for one chunk a step
# rather than for the whole prompt.
PREFILL_CHUNK = 2048


@dataclass(eq=False)
class Generation:
    """One generation request and its progress.

    Args:
        prompt: the 1-D token ids to continue.
        max_new_tokens: the most tokens to generate.
        temperature, top_k, top_p: sampling settings, as in `sample`.
        stop_tokens: token sequences that end generation (not released).
        generator: the random generator for sampling; None uses torch's global one.
        seed: without `generator`, sample with a generator of this seed, made on the model's device when the sequence
            is queued (where it runs: a request served by a token loop in another process carries only its seed).
        on_update: called (from the batcher's thread) with the sequence and the token ids that a step released,
            whenever there are some or the sequence has finished. It must be quick; it may call `cancel()`.
        include_stop: release the stop sequence that ended generation too.
        cached: leading prompt tokens already in KV-cache row 0 from an earlier call (used when the sequence is
            admitted into an empty batch: `generate_batch`).
    """

    prompt: torch.Tensor
    max_new_tokens: int
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: float = 1.0
    stop_tokens: StopSequences = ()
    generator: Optional[torch.Generator] = None
    seed: Optional[int] = None
    on_update: Optional[Callable[["Generation", List[int]], None]] = None
    include_stop: bool = False
    cached: int = 0
    # progress, for the consumer
    tokens: List[int] = field(default_factory=list, init=False)  # every id released so far
    done: bool = field(default=False, init=False)
    finish_reason: Optional[str] = field(default=None, init=False)  # "stop", "length", "cancelled" or "error"
    error: Optional[BaseException] = field(default=None, init=False, repr=False)
    # the batcher's bookkeeping
    _cancelled: bool = field(default=False, init=False, repr=False)
    _watcher: Optional[StopWatcher] = field(default=None, init=False, repr=False)
    _position: int = field(default=0, init=False, repr=False)  # the cache slot of the token to be fed next
    _sampled: int = field(default=0, init=False, repr=False)  # tokens sampled, read back or not
    _generated: int = field(default=0, init=False, repr=False)  # tokens read back
    _ids: Optional[List[int]] = field(default=None, init=False, repr=False)  # the prompt's ids, once matched
    _keys: Optional[List[int]] = field(default=None, init=False, repr=False)  # hashes of its leading blocks

    def cancel(self) -> None:
        """Stop generating; takes effect at the batcher's next step (safe from any thread)."""
        self._cancelled = True


def check_generation(gen: Generation, context: int) -> None:
    """Raise ValueError if `gen` can never run on a model of `context` tokens: bad settings, or too long."""
    check_sampling_args(gen.temperature, gen.top_k, gen.top_p)
    if gen.prompt.dim() != 1 or gen.prompt.numel() == 0:
        raise ValueError("The prompt must be a non-empty 1-D tensor of token ids")
    if gen.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {gen.max_new_tokens}")
    if gen.prompt.numel() + gen.max_new_tokens - 1 > context:  # the last token is never fed
        raise ValueError(
            f"The prompt ({gen.prompt.numel()} tokens) plus max_new_tokens ({gen.max_new_tokens}) exceeds the "
            f"model's context length ({context} tokens)"
        )


class Batcher:
    """The token loop: schedules sequences onto a model's KV cache rows, admitting new ones between decode steps.

    Each `step()` queues the next decode step of the running rows on the device before it reads back the tokens
    sampled by the previous one, so the device never waits for the host's bookkeeping (stop tokens, releasing
    tokens, retiring rows, admitting and prefilling new ones). A row's next token, its cache position and its
    sampling settings live on the device; the host only reads the tokens back, one transfer a step.

    Args:
        model: the GPT; the batcher replaces its KV cache as needed.
        max_batch_size: the most sequences decoded together (KV-cache rows).
        step: the decode step; default `fast_decode_step()` (CUDA graphs on GPUs).
        cache_multiple: KV-cache lengths are rounded up to this many positions to spare reallocations.
        draft: a draft/verify policy (`litgpt.engine.speculative.Speculation`): each step then runs one of its rounds
            on the single running row (which makes one or more tokens) in place of the decode step.
        reuse_prefixes: a sequence whose prompt shares its first tokens (whole blocks of REUSE_BLOCK, at least
            REUSE_MIN) with a running row's, or with one admitted in the same step, copies their keys and values and
            prefills only the rest. `reused_tokens` and `prefilled_tokens` count the prompt tokens copied and computed.
        prefill_chunk: a prompt with more tokens than this to compute, admitted while rows run, is prefilled this many
            tokens a step (between decode steps) before it joins; 0 prefills every prompt whole.
    """

    def __init__(self, model: GPT, max_batch_size: int, step: Optional[DecodeStep] = None, cache_multiple: int = 256,
                 draft: Optional[Any] = None, reuse_prefixes: bool = True, prefill_chunk: int = PREFILL_CHUNK) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if draft is not None and max_batch_size != 1:
            raise ValueError("Speculative decoding runs one sequence at a time: max_batch_size must be 1")
        self.draft = draft
        self.model = model
        self.max_batch_size = max_batch_size
        self.decode_step = step or fast_decode_step()
        self.cache_multiple = cache_multiple
        self.waiting: Deque[Generation] = deque()
        self.running: List[Generation] = []  # running[i] lives in KV-cache row i
        self._rows = _RowState()  # the running rows' next tokens, positions and sampling settings, on the device
        self._unread: Optional[Tuple[List[Generation], _TokenReader]] = None  # tokens sampled, not yet read back
        self._held = 0  # steps the first waiting sequence has been held back for a group to gather
        self.reuse_prefixes = reuse_prefixes
        self._prefixes: Dict[int, Dict[Generation, None]] = {}  # block hash -> running sequences whose prompts have it
        self._indexed: Set[Generation] = set()
        self.reused_tokens = 0
        self.prefilled_tokens = 0
        self.prefill_chunk = prefill_chunk
        self._chunked: Optional[_Chunked] = None  # the sequence being prefilled a chunk a step

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running or self._chunked)

    def check(self, gen: Generation) -> None:
        """Raise ValueError if `gen` can never run: bad settings, or longer than the model's context."""
        check_generation(gen, self.model.max_seq_length)

    def warm_up(self) -> None:
        """Generate a few tokens for made-up prompts so that compiling and capturing the steps happens now rather
        than in the first requests: two rows together (prefill, the many-row step, sampling), then one alone (the
        one-row step). Raises the first error a step met."""
        device = self.model.lm_head.weight.device
        groups = ((5, 9), (7,)) if self.max_batch_size > 1 else ((7,),)
        for group in groups:  # a greedy row and a sampled one, then a sampled one alone
            new = min(4, self.model.max_seq_length)  # a model of a tiny context still warms up
            gens = [Generation(torch.arange(max(1, min(length, self.model.max_seq_length - new + 1)), device=device), new,
                               temperature=0.8 if i or len(group) == 1 else 0.0, top_k=50) for i, length in enumerate(group)]
            for gen in gens:
                self.add(gen)
            while self.busy:
                self.step()
            for gen in gens:
                if gen.error is not None:
                    raise gen.error

    def add(self, gen: Generation) -> None:
        """Queue `gen`; it joins the running batch when a row is free."""
        self.check(gen)
        gen._watcher = StopWatcher(gen.stop_tokens, gen.include_stop)
        if gen.generator is None and gen.seed is not None:
            gen.generator = torch.Generator(self.model.lm_head.weight.device).manual_seed(gen.seed)
        self.waiting.append(gen)

    @torch.inference_mode()
    def step(self) -> None:
        """Queue a decode step of the running rows, read back the previous step's tokens (releasing them and retiring
        finished rows), then admit waiting sequences into free rows (prefilling them)."""
        try:
            self._remove([row for row, gen in enumerate(self.running) if gen._cancelled], "cancelled")
            if self.draft is None:
                sampled = self._decode() if any(g._sampled < g.max_new_tokens for g in self.running) else None
                finished = self._read()
                if sampled is not None:
                    self._rows.tokens = sampled
            else:  # a round needs the tokens so far: read first, then draft and verify on the host's schedule
                finished = self._read()
                if self.running and not finished:
                    gen = self.running[0]
                    self._release(gen, self.draft.round(self.model, gen))
                    finished = [0] if gen.done else []
            self._remove(finished)
            admitted = self._prefill_chunk()
            admitted = self._admit() or admitted
            # the sampled tokens to read back next step: every row's; with a draft policy only a new row's first one
            if self.running and (self.draft is None or admitted):
                self._unread = (list(self.running), _TokenReader(self._rows.tokens))
        except Exception as error:  # e.g. out of memory: fail what was in flight, keep serving the rest later
            for gen in self.running:
                _finish(gen, [], "error", error)
            self.running, self._rows, self._unread = [], _RowState(), None
            self._prefixes, self._indexed = {}, set()
            raise

    def run(self) -> None:
        """Step until every queued sequence has finished."""
        while self.busy:
            self.step()

    def _decode(self) -> torch.Tensor:
        """Queue one decode step of every running row; the tokens it samples (on the device, not read back)."""
        rows = self._rows
        cache_len = kv_cache_shape(self.model)[1]
        # a row past its last token (others still going) decodes once more, output unused, at a slot kept inside its
        # own cache row
        longest = min(cache_len, max(g._position for g in self.running) + 1)
        sampling = rows.sampling(self.running)
        tokens, positions = rows.tokens.view(-1, 1), rows.positions.view(-1, 1)
        fused = getattr(self.decode_step, "decode_and_sample", None)  # GraphedStep: sampling inside the step's graph
        if fused is not None:
            sampled = fused(self.model, tokens, positions, longest, sampling)
        else:
            sampled = choose(self.decode_step(self.model, tokens, positions, longest), sampling)
        rows.positions = (rows.positions + 1).clamp_(max=cache_len - 1)
        for gen in self.running:
            gen._position += 1
            gen._sampled += 1
        return sampled

    def _read(self) -> List[int]:
        """Release the tokens of the last step read back; the rows that finished with them."""
        if self._unread is None:
            return []
        gens, reader = self._unread
        self._unread = None
        for gen, token in zip(gens, reader.result()):
            self._release(gen, [token])
        return [row for row, gen in enumerate(self.running) if gen.done]

    def _release(self, gen: Generation, tokens: List[int]) -> None:
        """Take `gen`'s new tokens through its stop watcher: release what is safe to show, finish it at a stop
        sequence or at max_new_tokens (tokens after that are dropped)."""
        released: List[int] = []
        for token in tokens:
            if gen.done:  # cancelled (or failed) since, or finished by an earlier token
                return
            released += gen._watcher.push(token)
            gen._generated += 1
            if self.draft is not None:
                self.draft.accept(gen, token)
            if gen._watcher.stopped:
                _finish(gen, released, "stop")
            elif gen._generated == gen.max_new_tokens:
                _finish(gen, released + gen._watcher.flush(), "length")
        if released and not gen.done:
            gen.tokens.extend(released)
            _notify(gen, released)

    def _admit(self) -> bool:
        """Prefill waiting sequences into free rows, sampling their first tokens; whether any joined."""
        free = self.max_batch_size - len(self.running) - (self._chunked is not None)  # its row is kept for it
        if not self.waiting or not free:
            return False
        if len(self.running) >= ADMIT_ALONE_BELOW and len(self.waiting) < min(free, ADMIT_GROUP) and self._held < ADMIT_WAIT:
            self._held += 1
            return False
        self._held = 0
        new: List[Generation] = []
        held: List[Generation] = []  # long prompts waiting for the one being prefilled in chunks
        while self.waiting and len(new) < free:
            gen = self.waiting.popleft()
            if gen._cancelled:
                _finish(gen, [], "cancelled")
            elif (shared := self._chunk_from(gen, others=bool(self.running or new or self.waiting))) is not None:
                if self._chunked is None:
                    self._start_chunks(gen, *shared)
                    free -= 1
                else:
                    held.append(gen)
            else:
                new.append(gen)
        self.waiting.extendleft(reversed(held))
        if not new:
            return False
        # every row needs its prompt plus all but the last new token in the cache
        self._ensure_cache(max(s.prompt.numel() + s.max_new_tokens - 1 for s in self.running + new))
        try:
            new, logits = self._prefill(new, len(self.running))
        except Exception as error:
            for gen in new:
                _finish(gen, [], "error", error)
            raise
        self._join(new, logits)
        return True

    def _join(self, new: List[Generation], logits: torch.Tensor) -> None:
        """Start decoding `new`, just prefilled into the rows after the running ones, from their last `logits`."""
        for gen in new:
            gen._position = gen.prompt.numel()
            gen._sampled = 1
            if self.draft is not None:
                self.draft.admit(gen)
        self._rows.add(logits, new)
        self.running.extend(new)

    def _chunk_from(self, gen: Generation, others: bool) -> Optional[Tuple[int, Optional[Generation]]]:
        """Whether to prefill `gen` a chunk a step: when `others` (sequences running or joining with it) would wait
        for more than `prefill_chunk` prompt tokens of it (and, in a prefill with them, have their rows padded to its
        length), after what it could copy from a running row (`reuse_prefixes`). If so, the prompt tokens it can
        copy and the running sequence they come from, (0, None) for none; else None."""
        if not (others and self.prefill_chunk and gen.prompt.numel() > self.prefill_chunk):
            return None
        shared: Tuple[int, Optional[Generation]] = (0, None)
        if self.reuse_prefixes:
            self._index(self.running)
            shared = self._shared_prefix(gen)
        return shared if gen.prompt.numel() - shared[0] > self.prefill_chunk else None

    def _start_chunks(self, gen: Generation, done: int, source: Optional[Generation]) -> None:
        """Begin prefilling `gen` a chunk a step (`_prefill_chunk`), into a cache of its own, holding at first a copy
        of running `source`'s keys and values for the `done` prompt tokens they share (`_chunk_from`)."""
        cache = []
        for block in self.model.transformer.h:
            k = block.attn.kv_cache.k  # (rows, groups, positions, head size)
            shape = (1, k.size(1), gen.prompt.numel(), k.size(3))
            cache.append((torch.empty(shape, dtype=k.dtype, device=k.device), torch.empty(shape, dtype=k.dtype, device=k.device)))
        if done:
            row = self.running.index(source)
            _copy_kv(cache, slice(0, 1), _kv(self.model), slice(row, row + 1), done)
            self.reused_tokens += done
        self._chunked = _Chunked(gen, cache, done)

    def _prefill_chunk(self) -> bool:
        """Prefill the next chunk of the sequence being prefilled in chunks; when its prompt is complete, it joins the
        running rows (whether it did). A failure fails that sequence alone: the running rows' cache is not involved."""
        chunked = self._chunked
        if chunked is None:
            return False
        gen = chunked.gen
        if gen._cancelled:
            self._chunked = None
            _finish(gen, [], "cancelled")
            return False
        length = gen.prompt.numel()
        end = min(length, chunked.done + self.prefill_chunk)
        try:
            with _caches(self.model, chunked.cache):
                logits = prefill(self.model, [gen.prompt[:end].to(self.model.lm_head.weight.device)], start=chunked.done)
            self.prefilled_tokens += end - chunked.done
            chunked.done = end
            if end < length:
                return False
            self._chunked = None
            self._ensure_cache(max(g.prompt.numel() + g.max_new_tokens - 1 for g in self.running + [gen]))
            row = len(self.running)
            _copy_kv(_kv(self.model), slice(row, row + 1), chunked.cache, slice(0, 1), length)
        except Exception as error:
            self._chunked = None
            _finish(gen, [], "error", error)
            return False
        self._join([gen], logits)
        return True

    def _prefill(self, new: List[Generation], first: int) -> Tuple[List[Generation], torch.Tensor]:
        """Prefill `new` into the free rows from `first` on; the sequences in their row order, and their logits
        (len(new), V). With `reuse_prefixes`, those whose prompts begin with REUSE_MIN or more tokens of a running
        row's prompt, or of one prefilled just before them, copy that row's keys and values for the shared part and
        prefill only the rest, after the others."""
        leaders, followers = self._plan(new)
        logits = [self._prefill_rows(leaders, first, 0)] if leaders else []
        if followers:
            rows = {gen: row for row, gen in enumerate(self.running + leaders)}
            start = min(n for _, n, _ in followers)  # one prefill: each copies as many as the least shared
            _copy_cache_rows(self.model, [rows[source] for _, _, source in followers], first + len(leaders), start)
            logits.append(self._prefill_rows([gen for gen, _, _ in followers], first + len(leaders), start))
            self.reused_tokens += start * len(followers)
        return leaders + [gen for gen, _, _ in followers], logits[0] if len(logits) == 1 else torch.cat(logits)

    def _prefill_rows(self, gens: List[Generation], row: int, start: int) -> torch.Tensor:
        """Prefill `gens` into rows row, row + 1, ..., their first `start` tokens already there; their logits."""
        device = self.model.lm_head.weight.device
        prompts = [g.prompt.to(device) for g in gens]
        if row == 0:  # the rows are the cache's first ones: the step's own (compiled, graphed) prefill can run
            forward = getattr(self.decode_step, "prefill_forward", None)
            start = min(min(g.cached for g in gens), min(p.numel() for p in prompts) - 1)
            logits = prefill(self.model, prompts, start=start, forward=forward(self.model) if forward else None)
        else:
            with _cache_rows(self.model, row, row + len(gens)):
                # eager: the rows' cache views are new objects each time, which a compiled prefill would recompile for
                logits = prefill(self.model, prompts, start=start)
        self.prefilled_tokens += sum(p.numel() for p in prompts) - start * len(prompts)
        return logits

    def _plan(self, new: List[Generation]) -> Tuple[List[Generation], List[Tuple[Generation, int, Generation]]]:
        """`new` as those to prefill whole (leaders) and those to copy a prompt prefix for (followers: each with the
        tokens it shares and the running sequence or leader it shares them with)."""
        if not self.reuse_prefixes or any(g.cached for g in new):  # generate_batch's cached tokens: its own scheme
            return new, []
        if not self.running and len(new) == 1:  # nothing to share with (e.g. `litgpt generate`)
            return new, []
        self._index(self.running)
        leaders: List[Generation] = []
        followers = []
        for gen in new:
            n, source = self._shared_prefix(gen)
            if n:
                followers.append((gen, n, source))
            else:
                leaders.append(gen)
                self._index([gen])
        return leaders, followers

    def _index(self, gens: List[Generation]) -> None:
        """Offer `gens`' prompts as sources of prefixes (`_shared_prefix`)."""
        for gen in gens:
            if gen not in self._indexed:
                self._indexed.add(gen)
                for key in _prefix_keys(gen):
                    self._prefixes.setdefault(key, {})[gen] = None

    def _shared_prefix(self, gen: Generation) -> Tuple[int, Optional[Generation]]:
        """The most leading prompt tokens (whole blocks, at least REUSE_MIN, never the whole prompt) that `gen`
        shares with an indexed sequence, and that sequence; (0, None) if fewer."""
        keys = _prefix_keys(gen)
        for blocks in range(len(keys), REUSE_MIN // REUSE_BLOCK - 1, -1):
            for source in self._prefixes.get(keys[blocks - 1], ()):
                n = blocks * REUSE_BLOCK
                if source._ids[:n] == gen._ids[:n]:  # not merely an equal hash
                    return n, source
        return 0, None

    def _remove(self, rows: List[int], reason: Optional[str] = None) -> None:
        """Retire `rows` (finishing them with `reason` if given); the last running rows move into the gaps."""
        if not rows:
            return
        order = list(range(len(self.running)))
        for row in sorted(rows, reverse=True):  # the last row is then never one still to remove
            if reason is not None:
                _finish(self.running[row], [], reason)
            self._unindex(self.running[row])
            last = len(self.running) - 1
            if row != last:
                _copy_cache_rows(self.model, [last], row, self.running[last]._position + 1)
                self.running[row] = self.running[last]
                order[row] = order[last]
            self.running.pop()
            order.pop()
        self._rows.keep(order)

    def _unindex(self, gen: Generation) -> None:
        """Forget `gen`'s prompt as a source of prefixes (`reuse_prefixes`)."""
        if gen in self._indexed:
            self._indexed.discard(gen)
            for key in gen._keys:
                holders = self._prefixes[key]
                del holders[gen]
                if not holders:
                    del self._prefixes[key]

    def _ensure_cache(self, length: int) -> None:
        """A KV cache of max_batch_size rows of at least `length` positions, keeping the running rows' contents."""
        length = min(length, self.model.max_seq_length)
        shape = kv_cache_shape(self.model)
        if shape is not None and shape[0] >= self.max_batch_size and shape[1] >= length:
            return
        old = _kv(self.model) if self.running else []
        rows = max(self.max_batch_size, shape[0] if shape is not None else 0)
        ensure_kv_cache(self.model, rows, length, multiple=self.cache_multiple)
        if old:
            n = len(self.running)
            _copy_kv(_kv(self.model), slice(0, n), old, slice(0, n), old[0][0].size(2))


@dataclass(eq=False)
class _Chunked:
    """A sequence being prefilled a chunk a step: its own KV cache (keys, values per layer, one row of its prompt's
    length) and how many prompt tokens are in it."""

    gen: Generation
    cache: List[Tuple[torch.Tensor, torch.Tensor]]
    done: int


class _RowState:
    """The running rows' device-side state, in row order: the next token to feed, its cache position, and the
    sampling settings that `sample_with` reads (and, on the host, which rows are greedy and how many of the most
    likely tokens each may pick from)."""

    def __init__(self) -> None:
        self.tokens: Optional[torch.Tensor] = None  # (B,)
        self.positions: Optional[torch.Tensor] = None  # (B,)
        self.settings: Optional[torch.Tensor] = None  # (B, 4)
        self.greedy: List[bool] = []
        self.widths: List[int] = []

    def add(self, logits: torch.Tensor, gens: List[Generation]) -> None:
        """Append newly admitted rows, their first tokens sampled from their prefill `logits` (len(gens), V)."""
        new = RowSettings([g.temperature for g in gens], [g.top_k for g in gens], [g.top_p for g in gens], logits.size(-1))
        settings = new.tensor(logits.device)
        tokens = choose(logits, _sampling(gens, new.greedy, new.widths, settings))
        positions = to_device(torch.tensor([g.prompt.numel() for g in gens]), logits.device)
        if self.tokens is None:
            self.tokens, self.positions, self.settings = tokens, positions, settings
        else:
            self.tokens = torch.cat((self.tokens, tokens))
            self.positions = torch.cat((self.positions, positions))
            self.settings = torch.cat((self.settings, settings))
        self.greedy += new.greedy
        self.widths += new.widths

    def keep(self, order: List[int]) -> None:
        """Keep the rows `order` (old row indices, in their new order)."""
        if not order:
            self.__init__()
            return
        index = to_device(torch.tensor(order), self.tokens.device)
        self.tokens, self.positions, self.settings = self.tokens[index], self.positions[index], self.settings[index]
        self.greedy = [self.greedy[i] for i in order]
        self.widths = [self.widths[i] for i in order]

    def sampling(self, gens: List[Generation]) -> Sampling:
        """What the running rows `gens` sample their next tokens with (`choose`)."""
        return _sampling(gens, self.greedy, self.widths, self.settings)


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
    """Generate for several 1-D prompts at once, through the `Batcher` loop with every prompt admitted together;
    yields, per row, the token ids released since the last yield, until every row has finished.

    A row stops after one of `stop_tokens` (not yielded unless `include_stop`) or `max_new_tokens` tokens. The
    model's KV cache must hold `len(prompts)` rows of `max(len(prompt)) + max_new_tokens - 1` positions
    (`ensure_kv_cache`). The rows share `generator` (torch's global one if None): one draw of `len(prompts)`
    numbers a step, as `sample` makes.

    Args:
        cached: leading prompt tokens (shared by all rows) already in the KV cache from an earlier call.
        step: the decode step, e.g. `fast_decode_step()` (CUDA graphs).
    """
    check_sampling_args(temperature, top_k, top_p)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    B = len(prompts)
    longest = max(int(p.numel()) for p in prompts)
    shape = kv_cache_shape(model)
    if shape is None or shape[0] < B or shape[1] < longest + max_new_tokens - 1:
        raise ValueError(
            f"The prompt ({longest} tokens) plus max_new_tokens ({max_new_tokens}) needs a KV cache of "
            f"{B} x {longest + max_new_tokens - 1} positions; the model has {shape or 'none'} (see ensure_kv_cache)"
        )
    gens = [Generation(prompt, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, stop_tokens=stop_tokens,
                       generator=generator, include_stop=include_stop, cached=cached) for prompt in prompts]
    batcher = Batcher(model, B, step=step, cache_multiple=1)
    for gen in gens:
        batcher.add(gen)
    taken = [0] * B
    while batcher.busy:
        batcher.step()
        released = [gen.tokens[n:] for gen, n in zip(gens, taken)]
        taken = [len(gen.tokens) for gen in gens]
        if any(released) or not batcher.busy:
            yield released


def generate_tokens(model: GPT, prompt: torch.Tensor, max_new_tokens: int, **kwargs: Any) -> Iterator[int]:
    """Yield the new token ids for one 1-D `prompt`: `generate_batch` with one row (the same keyword arguments)."""
    for released in generate_batch(model, [prompt], max_new_tokens, **kwargs):
        yield from released[0]


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


def stop_at_text(decode: Callable[[List[int]], str], stops: Sequence[str],
                 then: Optional[Callable[[Generation, List[int]], None]] = None) -> Callable[[Generation, List[int]], None]:
    """An `on_update` that cancels a generation once its decoded text contains one of the `stops` strings, then
    calls `then` (the generation's own `on_update`), if given.

    Only the newest tokens are decoded: enough to hold a stop string that the latest step completed.
    """
    window = max(len(stop) for stop in stops) + 8  # a token is at least a character, bar special and partial ones

    def check(gen: Generation, released: List[int]) -> None:
        if not gen.done and released:
            tail = decode(gen.tokens[-(len(released) + window) :])
            if any(stop in tail for stop in stops):
                gen.cancel()
        if then is not None:
            then(gen, released)

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


def _sampling(gens: List[Generation], greedy: List[bool], widths: List[int], settings: torch.Tensor) -> Sampling:
    """How rows `gens` draw their next tokens (`choose`): None when all are greedy, else their settings on the device,
    the width (most likely tokens) any may pick from, and one uniform number each.

    Rows that share a generator (a request with a seed has its own; `generate_batch`'s rows share the caller's)
    draw their uniform numbers from it together, as `sample` does: the same seed gives the same tokens through
    `litgpt generate`, `LLM.generate` and the server. The other rows share one draw from torch's global generator."""
    if all(greedy):
        return None
    return settings, max(widths), _uniform(gens, greedy, settings.device)


def _uniform(gens: List[Generation], greedy: List[bool], device: torch.device) -> torch.Tensor:
    groups: dict = {}
    for row, gen in enumerate(gens):
        if not greedy[row]:
            groups.setdefault(gen.generator, []).append(row)
    if len(groups) == 1 and len(next(iter(groups.values()))) == len(gens):  # e.g. generate_batch's rows
        return torch.rand(len(gens), generator=next(iter(groups)), device=device)
    uniform = torch.rand(len(gens), device=device) if None in groups else torch.zeros(len(gens), device=device)
    for generator, rows in groups.items():
        if generator is not None:
            draw = torch.rand(len(rows), generator=generator, device=device)
            if len(rows) == 1:
                uniform[rows[0] : rows[0] + 1] = draw
            else:
                uniform[torch.tensor(rows, device=device)] = draw
    return uniform


class _TokenReader:
    """Copies sampled tokens to the host without blocking the device queue; `result()` waits for them."""

    def __init__(self, tokens: torch.Tensor) -> None:
        self.cuda = tokens.is_cuda
        if not self.cuda:
            self.tokens = tokens
            return
        self.tokens = torch.empty(tokens.shape, dtype=tokens.dtype, pin_memory=True)
        self.tokens.copy_(tokens, non_blocking=True)
        self.event = torch.cuda.Event()
        self.event.record()

    def result(self) -> List[int]:
        if self.cuda:
            self.event.synchronize()
        return self.tokens.tolist()


def _finish(gen: Generation, released: List[int], reason: str, error: Optional[BaseException] = None) -> None:
    """End `gen` with its last `released` tokens, telling its consumer."""
    gen.tokens.extend(released)
    gen.done, gen.finish_reason, gen.error = True, reason, error
    _notify(gen, released)


def _notify(gen: Generation, released: List[int]) -> None:
    if gen.on_update is None:
        return
    try:
        gen.on_update(gen, released)
    except Exception:  # a broken consumer must not stop the other sequences
        gen.cancel()


def _cache_rows(model: GPT, start: int, stop: int) -> Any:
    """Let the model see KV-cache rows start..stop-1 as its whole cache (rows 0..), e.g. to prefill new sequences."""
    return _caches(model, [(k[start:stop], v[start:stop]) for k, v in _kv(model)])


@contextmanager
def _caches(model: GPT, tensors: List[Tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """Let the model see `tensors` (keys, values per layer) as its KV cache: views of its own cache's rows, or a
    sequence's own cache while it is prefilled in chunks."""
    caches = [block.attn.kv_cache for block in model.transformer.h]
    try:
        for block, (k, v) in zip(model.transformer.h, tensors):
            view = KVCache(0, 1, 0, 1)  # an empty shell, then the tensors
            view.k, view.v = k, v
            block.attn.kv_cache = view
        yield
    finally:
        for block, cache in zip(model.transformer.h, caches):
            block.attn.kv_cache = cache


def _copy_cache_rows(model: GPT, sources: List[int], target: int, length: int) -> None:
    """Copy the first `length` positions of KV-cache rows `sources` into rows target, target + 1, ..., in every layer."""
    caches = _kv(model)
    one = all(s == sources[0] for s in sources)  # e.g. every new row shares the same running row's system prompt
    index = slice(sources[0], sources[0] + 1) if one else torch.tensor(sources, device=caches[0][0].device)
    _copy_kv(caches, slice(target, target + len(sources)), caches, index, length)


def _kv(model: GPT) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The model's KV cache: keys and values (rows, groups, positions, head size) per layer."""
    return [(b.attn.kv_cache.k, b.attn.kv_cache.v) for b in model.transformer.h]


def _copy_kv(targets: List[Tuple[torch.Tensor, torch.Tensor]], target_rows: slice, sources: List[Tuple[torch.Tensor, torch.Tensor]],
             source_rows: Any, length: int) -> None:
    """Copy the first `length` positions of rows `source_rows` (a slice or an index tensor) of each layer's keys and
    values in `sources` into rows `target_rows` of `targets`: the model's cache (`_kv`) or a sequence's own."""
    for (target_k, target_v), (source_k, source_v) in zip(targets, sources):
        target_k[target_rows, :, :length] = source_k[source_rows, :, :length]
        target_v[target_rows, :, :length] = source_v[source_rows, :, :length]


def _prefix_keys(gen: Generation) -> List[int]:
    """Hashes of `gen`'s prompt's first REUSE_BLOCK, 2 * REUSE_BLOCK, ... tokens, each hashing the one before and its
    block (never the whole prompt: a prefill needs at least one token); kept on `gen` with its ids."""
    if gen._keys is None:
        gen._ids = gen.prompt.tolist()
        keys, key = [], 0
        for end in range(REUSE_BLOCK, len(gen._ids), REUSE_BLOCK):
            key = hash((key, tuple(gen._ids[end - REUSE_BLOCK : end])))
            keys.append(key)
        gen._keys = keys
    return gen._keys

"""The pieces of the token loop (`litgpt.engine.batcher`): decode steps (eager, CUDA-graphed, compiled), prefill,
KV-cache sizing and stop handling.

Prompts of different lengths share one batch without padding tricks: each row is fed at its own positions
(input_pos of shape (B, T)). A shorter row's padding lands in cache slots after its prompt, which the
causal mask hides and its own next tokens overwrite, so every row decodes exactly as it would alone.
"""

import warnings
import weakref
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from litgpt.checkpoint import first_line
from litgpt.engine.sampling import Sampling, choose
from litgpt.model import GPT

StopSequences = Iterable[Union[int, Sequence[int]]]
# (model, tokens (B, T), positions (B, T), input_pos_maxp1) -> logits of the last position (B, V)
DecodeStep = Callable[[GPT, torch.Tensor, torch.Tensor, Optional[int]], torch.Tensor]


def decode_step(model: GPT, tokens: torch.Tensor, positions: torch.Tensor, input_pos_maxp1: Optional[int]) -> torch.Tensor:
    """Logits (B, V) after feeding `tokens` (B, T) at `positions` (B, T) through the KV cache."""
    return model(tokens, positions, input_pos_maxp1=input_pos_maxp1)[:, -1]


def compile_blocks(model: GPT, decode: bool = False, products: bool = True, **compile_options: Any) -> GPT:
    """A view of `model` whose transformer blocks run under `torch.compile(**compile_options)`.

    The view shares the model's weights, buffers and KV caches, and the model itself stays as it was. Blocks of
    one structure share one compilation (regional compilation), so compiling takes about as long as for one
    block, whatever the depth; the embedding, masks, final norm and head stay eager. With `decode` (a step of one
    token per row) the blocks run their products and attention through our kernels (`litgpt.engine.decode_kernels`),
    and the final norm is compiled too.
    """
    from litgpt.engine.decode_kernels import shallow_copy

    view = decode_view(model, products) if decode else model
    view, transformer = shallow_copy(view), shallow_copy(view.transformer)
    transformer._modules["h"] = nn.ModuleList(torch.compile(block, **compile_options) for block in transformer.h)
    if decode:  # the final norm: one kernel in place of ~7 small eager ones a step
        transformer._modules["ln_f"] = torch.compile(transformer.ln_f, **compile_options)
    view._modules["transformer"] = transformer
    return view


def decode_view(model: GPT, products: bool = True) -> GPT:
    """A view of `model` whose blocks run their attention of one query a row over the cache, and with `products`
    (for one row) their matrix products, through `litgpt.engine.decode_kernels` (see `decode_block`)."""
    from litgpt.engine.decode_kernels import decode_block, shallow_copy

    view, transformer = shallow_copy(model), shallow_copy(model.transformer)
    transformer._modules["h"] = nn.ModuleList(decode_block(block, products) for block in model.transformer.h)
    view._modules["transformer"] = transformer
    return view


def compiled_decode_step(**compile_options: Any) -> DecodeStep:
    """`decode_step` through `compile_blocks(model, dynamic=False, **compile_options)`, with our decode kernels for
    one token (`decode=True`); it attends over the whole cache so that shapes stay fixed."""
    views: "weakref.WeakKeyDictionary[GPT, dict]" = weakref.WeakKeyDictionary()  # model -> {one token: view}

    def step(model: GPT, tokens: torch.Tensor, positions: torch.Tensor, input_pos_maxp1: Optional[int]) -> torch.Tensor:
        one = tokens.numel() == 1
        by_kind = views.setdefault(model, {})
        if one not in by_kind:
            by_kind[one] = compile_blocks(model, decode=one, **{"dynamic": False, **compile_options})
        return by_kind[one](tokens, positions)[:, -1]

    return step


class GraphedStep:
    """A `DecodeStep` that replays a CUDA graph of the single-token forward (optionally `torch.compile`d first).

    An eager step launches a few hundred small kernels from Python, which at batch 1 takes longer than the
    kernels themselves; a graph replays them all in one call. A graph is captured the first time each shape is
    met: the batch is padded up to a power of two (the padding rows are free cache rows), and the step attends
    over the whole cache, or over a power-of-two prefix of it (at least 256 positions) that holds every row's tokens.
    Capture runs the real step a few times, which is harmless because it writes the same keys and values to the
    same cache slots each time. Off CUDA, for bitsandbytes-quantized models (not capturable) and for models
    spread over several devices, it is the plain step (compiled if asked). The returned logits are a copy, free to keep.

    With `compile`, prefills go through the model compiled with dynamic shapes (`prefill_forward`), and a prefill
    from position 0 of up to 2,048 tokens replays a graph too: its length is padded up to a power of two, the
    padding tokens landing in cache slots after the prompt that decoding overwrites before it ever attends to them.

    Args:
        compile: compile the model's blocks (`compile_blocks(decode=True)`) with `torch.compile(dynamic=False,
            **compile_options)` before capturing the step. The blocks' matrix-vector products (with their norms and
            SwiGLU) and their attention over the cache run as our Triton kernels (`litgpt.engine.decode_kernels`,
            fixed configurations: a compiled step decodes at the same speed every time); inductor fuses what lies
            between them, with coordinate-descent tuning and programmatic dependent launch on Hopper and later GPUs
            (each kernel is scheduled while the one before it finishes: a step is ~200 small kernels).
        regional: compile one block for all (`compile_blocks`, seconds); False compiles the whole model, which
            takes minutes for a large model (it decoded 8-9% faster on an H200 before our decode kernels; not
            measured since).
    """

    def __init__(self, compile: bool = False, regional: bool = True, **compile_options: Any) -> None:
        self.compile = compile
        self.regional = regional
        self.compile_options = {"dynamic": False, "options": _decode_inductor_options(), **compile_options}
        self._fallback: DecodeStep = compiled_decode_step(**self.compile_options) if compile else decode_step
        self._graphs: "weakref.WeakKeyDictionary[GPT, dict]" = weakref.WeakKeyDictionary()  # model -> {key: graph}
        self._caches: Tuple[int, ...] = ()
        self._pool: Any = None
        self._capturable: "weakref.WeakKeyDictionary[GPT, bool]" = weakref.WeakKeyDictionary()
        self._views: "weakref.WeakKeyDictionary[GPT, dict]" = weakref.WeakKeyDictionary()  # model -> {kind: view}

    def _view(self, model: GPT, kind: str) -> GPT:
        """The model for a `kind` of forward: "one" (decode steps of one token, attention and products through our
        decode kernels, which serve a single row only), "rows" (decode steps of one token a row: attention through
        our kernel) or "prefill" (dynamic shapes, any length); compiled with `compile`."""
        views = self._views.setdefault(model, {})
        if kind not in views:
            if not self.compile:
                views[kind] = decode_view(model, products=kind == "one")
            else:
                # one token: fixed shapes; many rows: one compilation for every row count and cache length
                # (each bucket's CUDA graph replays it), as a recompile per bucket would take minutes
                options = {"dynamic": True} if kind == "prefill" else {**self.compile_options, "dynamic": kind == "rows"}
                decode, products = kind != "prefill", kind == "one"
                if self.regional:
                    views[kind] = compile_blocks(model, decode=decode, products=products, **options)
                else:
                    views[kind] = torch.compile(decode_view(model, products) if decode else model, **options)
        return views[kind]

    def __call__(self, model: GPT, tokens: torch.Tensor, positions: torch.Tensor, input_pos_maxp1: Optional[int]) -> torch.Tensor:
        return self._run(model, tokens, positions, input_pos_maxp1, False, None)

    def decode_and_sample(self, model: GPT, tokens: torch.Tensor, positions: torch.Tensor, input_pos_maxp1: Optional[int],
                          sampling: Sampling) -> torch.Tensor:
        """The step and the choice of each row's next token (`litgpt.engine.sampling.choose`) in one graph: the next
        tokens (B,). Replaying the sampler's kernels with the step's spares the host launching a dozen more kernels
        a step, and the step's logits are never copied out."""
        return self._run(model, tokens, positions, input_pos_maxp1, True, sampling)

    def _run(self, model: GPT, tokens: torch.Tensor, positions: torch.Tensor, input_pos_maxp1: Optional[int], pick: bool,
             sampling: Sampling) -> torch.Tensor:
        try:
            return self._step(model, tokens, positions, input_pos_maxp1, pick, sampling)
        except Exception as error:  # torch.compile's failures come in many classes; they happen before any kernel runs
            if not self.compile:
                raise
            self._give_up_compiling(error)
            return self._step(model, tokens, positions, input_pos_maxp1, pick, sampling)

    def _give_up_compiling(self, error: Exception) -> None:
        """Decode uncompiled from now on (a server keeps serving when a shape it meets late fails to compile)."""
        warnings.warn(f"Decoding without torch.compile from now on: compiling the step failed ({first_line(error)})")
        self.compile = False
        self._fallback = decode_step
        self._views = weakref.WeakKeyDictionary()
        self._graphs.clear()
        self._caches = ()
        self._capturable = weakref.WeakKeyDictionary()

    def _step(self, model: GPT, tokens: torch.Tensor, positions: torch.Tensor, input_pos_maxp1: Optional[int], pick: bool,
              sampling: Sampling) -> torch.Tensor:
        """The logits (B, V), or with `pick` the next tokens (B,) chosen under `sampling`."""
        if not self._graphable(model, tokens):
            return self._plain(model, tokens, positions, input_pos_maxp1, pick, sampling)
        cache_rows, cache_len = kv_cache_shape(model)
        B, T = tokens.shape
        rows = min(cache_rows, 1 << (B - 1).bit_length())
        length = cache_len
        if cache_len > 256 and input_pos_maxp1 is not None:
            length = min(cache_len, max(256, 1 << (input_pos_maxp1 - 1).bit_length()))
        # what the graph ends with: the logits, the argmax, or a draw from the `width` most likely tokens
        width = None if not pick else 0 if sampling is None else sampling[1]

        def make() -> Tuple[Callable, Tuple[torch.Tensor, ...]]:
            view = self._view(model, "one" if rows * T == 1 else "rows") if T == 1 or self.compile else model

            def forward(tokens: torch.Tensor, positions: torch.Tensor, settings: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
                logits = view(tokens, positions, input_pos_maxp1=length)[:, -1]
                if width is None:
                    return logits
                return choose(logits, None if width == 0 else (settings, width, uniform))

            # filled with this step's real inputs: capturing runs the step, and must write what the replay will; the
            # padding rows sample as greedy ones (settings [k 1, temperature 1, top_p 1, greedy])
            static = (torch.zeros(rows, T, dtype=tokens.dtype, device=tokens.device),
                      torch.zeros(rows, T, dtype=positions.dtype, device=positions.device),
                      torch.ones(rows, 4, device=tokens.device), torch.zeros(rows, device=tokens.device))
            _fill(static, B, tokens, positions, sampling)
            return forward, static

        entry = self._entry(model, ("decode", rows, T, length, width), make)
        if entry is None:
            return self._plain(model, tokens, positions, input_pos_maxp1, pick, sampling)
        _fill(entry["inputs"], B, tokens, positions, sampling)
        entry["graph"].replay()
        return entry["output"][:B].clone()

    def _plain(self, model: GPT, tokens: torch.Tensor, positions: torch.Tensor, input_pos_maxp1: Optional[int], pick: bool,
               sampling: Sampling) -> torch.Tensor:
        logits = self._fallback(model, tokens, positions, input_pos_maxp1)
        return choose(logits, sampling) if pick else logits

    def prefill_forward(self, model: GPT) -> Optional[Callable]:
        """With `compile`, on CUDA: a forward for `prefill` (the model's blocks compiled for any length, dynamic
        shapes), which replays a graph of it for prefills from position 0. An eager prefill of a large model spends
        longer launching its kernels from Python than running them, and a compiled one still launches each kernel
        from Python."""
        if not (self.compile and model.lm_head.weight.is_cuda and self._is_capturable(model)):
            return None
        compiled = self._view(model, "prefill")

        def forward(tokens: torch.Tensor, positions: torch.Tensor, input_pos_maxp1: int, logits_at: torch.Tensor) -> torch.Tensor:
            if not self.compile:  # given up since (`_give_up_compiling`)
                return model(tokens, positions, input_pos_maxp1=input_pos_maxp1, logits_at=logits_at)
            try:
                return compiled_prefill(tokens, positions, input_pos_maxp1, logits_at)
            except Exception as error:
                self._give_up_compiling(error)
                return model(tokens, positions, input_pos_maxp1=input_pos_maxp1, logits_at=logits_at)

        def compiled_prefill(tokens: torch.Tensor, positions: torch.Tensor, input_pos_maxp1: int, logits_at: torch.Tensor) -> torch.Tensor:
            B, T = tokens.shape
            cache_rows, cache_len = kv_cache_shape(model)
            padded = max(16, 1 << (T - 1).bit_length())
            if input_pos_maxp1 != T or padded > min(2048, cache_len) or B > cache_rows:
                return compiled(tokens, positions, input_pos_maxp1=input_pos_maxp1, logits_at=logits_at)

            def make() -> Tuple[Callable, Tuple[torch.Tensor, ...]]:
                def padded_forward(tokens: torch.Tensor, positions: torch.Tensor, logits_at: torch.Tensor) -> torch.Tensor:
                    return compiled(tokens, positions, input_pos_maxp1=padded, logits_at=logits_at)

                static = torch.zeros(B, padded, dtype=tokens.dtype, device=tokens.device)
                static[:, :T].copy_(tokens)
                return padded_forward, (static, torch.arange(padded, device=tokens.device).expand(B, -1).contiguous(), logits_at.clone())

            entry = self._entry(model, ("prefill", B, padded), make)
            if entry is None:
                return compiled(tokens, positions, input_pos_maxp1=input_pos_maxp1, logits_at=logits_at)
            entry["inputs"][0][:, :T].copy_(tokens)
            entry["inputs"][2].copy_(logits_at)
            entry["graph"].replay()
            return entry["output"].clone()

        return forward

    def _graphable(self, model: GPT, tokens: torch.Tensor) -> bool:
        return tokens.is_cuda and self._is_capturable(model)

    def _is_capturable(self, model: GPT) -> bool:
        if model not in self._capturable:
            quantized = any(type(m).__module__.startswith("bitsandbytes") for m in model.modules())
            spread = len({p.device for p in model.parameters()}) > 1  # e.g. generate_sequentially's placement
            self._capturable[model] = not (quantized or spread)
        return self._capturable[model]

    def _entry(self, model: GPT, key: tuple, make: Callable[[], Tuple[Callable, Tuple[torch.Tensor, ...]]]) -> Optional[dict]:
        """The graph for `key`, captured on first use from `make()` = (forward, static inputs); None if it cannot be."""
        # the graphs read and write the caches at fixed addresses: any new cache makes them stale (one layer's new
        # cache may land where another's old one was, so every layer's addresses count)
        caches = tuple(t.data_ptr() for block in model.transformer.h for t in (block.attn.kv_cache.k, block.attn.kv_cache.v))
        if caches != self._caches:
            self._graphs.clear()
            self._caches = caches
        graphs = self._graphs.setdefault(model, {})
        if key not in graphs:
            try:
                graphs[key] = self._capture(*make())
            except RuntimeError as error:  # e.g. a layer that syncs with the host cannot be captured
                if self.compile:  # perhaps compiling failed: `__call__` retries uncompiled first
                    torch.cuda.synchronize()
                    raise
                warnings.warn(f"Decoding without CUDA graphs: capturing the step failed ({first_line(error)})")
                self._capturable[model] = False
                torch.cuda.synchronize()
                return None
        return graphs[key]

    def _capture(self, forward: Callable, inputs: Tuple[torch.Tensor, ...]) -> dict:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (and compilation) off the capturing stream
            for _ in range(2):
                forward(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: a server captures on its batching thread while other threads may touch CUDA
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            output = forward(*inputs)
        return {"graph": graph, "inputs": inputs, "output": output}


def _fill(static: Tuple[torch.Tensor, ...], B: int, tokens: torch.Tensor, positions: torch.Tensor, sampling: Sampling) -> None:
    """Copy a step's inputs into a graph's static ones (whose rows past B are padding)."""
    static[0][:B].copy_(tokens)
    static[1][:B].copy_(positions)
    if sampling is not None:
        settings, _, uniform = sampling
        static[2][:B].copy_(settings)
        static[3][:B].copy_(uniform)


def fast_decode_step(compile: bool = False) -> DecodeStep:
    """The decode step commands use: CUDA graphs on GPUs, compiled with `--compile`."""
    return GraphedStep(compile=compile)


def _decode_inductor_options() -> dict:
    """Inductor options of compiled decode steps (see `GraphedStep`): programmatic dependent launch only where this
    torch has the option (torch.compile rejects options it does not know, and the package admits torch 2.4)."""
    import torch._inductor.config

    options = {"coordinate_descent_tuning": True}
    if hasattr(torch._inductor.config.triton, "enable_pdl"):
        options["triton.enable_pdl"] = True
    return options


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


def prefill(model: GPT, prompts: Sequence[torch.Tensor], start: int = 0, forward: Optional[Callable] = None) -> torch.Tensor:
    """Feed `prompts[i][start:]` (rows of any length) through the KV cache; the logits (B, V) after each row's last token.

    The first `start` tokens of every prompt must already be in the cache at positions 0..start-1. `forward`
    replaces `model`'s own call (a compiled one, see `prefill_forward`).
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
    last = torch.tensor(lengths, device=device) - 1 - start
    return (model if forward is None else forward)(tokens, positions, input_pos_maxp1=T, logits_at=last)


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
        self._starts = {s[0] for s in self.sequences}
        self.include_stop = include_stop
        self.held: List[int] = []
        self.stopped = False

    def push(self, token: int) -> List[int]:
        """Add a generated token; the tokens now safe to show."""
        if not self.held and token not in self._starts:  # most tokens: neither a stop nor the start of one
            return [token]
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

"""A `Batcher` in a process of its own: the server's token loop, apart from its HTTP event loop.

    EngineProcess(build, *args) ─► spawns a process that runs build(*args) -> (Batcher, decode), then steps it
    submit(gen, stops, whole)   ─► ("add", ...) down a pipe; the process queues an equal Generation
    the process, each step      ─► ("updates", [(id, released, done, finish_reason, error), ...]) up a pipe
                                   (a `whole` one's only at its first tokens and its end)
    a receiving thread here     ─► applies them to `gen` and calls gen.on_update, as a Batcher would

In one process the token loop and the HTTP event loop share the interpreter lock: every request the event loop
parses, every piece it streams, holds the loop's next step back. Here they share nothing but two pipes. The
process ignores SIGINT and SIGTERM (the server finishes the requests in flight first) and ends when told to or
when its pipe closes (the server is gone, however it ended).
"""

import itertools
import multiprocessing
import os
import pickle
import signal
import threading
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from litgpt.engine.batcher import Batcher, Generation, _finish, _notify, check_generation, stop_at_text

Build = Callable[..., Tuple[Batcher, Callable[[List[int]], str]]]  # -> the batcher, and the tokenizer's decode


class EngineError(RuntimeError):
    """The token loop's process failed to start or ended."""


class EngineProcess:
    """Runs `build(*args)`'s Batcher in a spawned process: `submit` from any thread; results come through each
    Generation's `on_update`, called on this process's receiving thread. `info` holds what the process reported
    when ready: `rows`, `context` (the model's max_seq_length) and `device`."""

    def __init__(self, build: Build, *args: Any, on_exit: Optional[Callable[[str], None]] = None) -> None:
        """`on_exit`: called (from the receiving thread) with a one-line reason if the process ends unasked."""
        self.on_exit = on_exit
        context = multiprocessing.get_context("spawn")
        child_requests, self._requests = context.Pipe(duplex=False)
        self._updates, child_updates = context.Pipe(duplex=False)
        self.process = context.Process(target=_main, args=(child_requests, child_updates, build, args), name="litgpt-engine", daemon=True)
        self.process.start()
        child_requests.close()
        child_updates.close()
        message = _receive(self._updates)
        if message is None or message[0] != "ready":
            self.process.join(5)
            if message is None:
                raise EngineError(f"The token loop's process ended while loading (exit code {self.process.exitcode})")
            raise message[1]  # what loading raised there (a bad checkpoint, too little memory, ...)
        self.info: Dict[str, Any] = message[1]
        # `_lock` guards the generations in flight, `_sending` the pipe to the process. A send may wait (a full pipe
        # while the process is busy sending its own updates) and must not hold up the thread that takes those updates
        self._lock = threading.Lock()
        self._sending = threading.Lock()
        self._ids = itertools.count()
        self._gens: Dict[int, Generation] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._receive_updates, name="litgpt-engine-updates", daemon=True)
        self._thread.start()

    def check(self, gen: Generation) -> None:
        check_generation(gen, self.info["context"])

    def submit(self, gen: Generation, stops: Sequence[str] = (), whole: bool = False) -> Generation:
        """Queue `gen` in the process (its `generator` must be None: give a `seed`); raises ValueError here if it can
        never run. `stops`: strings whose appearance in the decoded reply cancels it there (`stop_at_text`). `whole`:
        only its first tokens and its end are wanted here; the process keeps the tokens between and sends them with
        the end (`gen.tokens` grows twice), sparing both processes a message part per step."""
        self.check(gen)
        if gen.generator is not None:
            raise ValueError("A generation run in another process takes a seed, not a generator")
        if not self._thread.is_alive():  # the process has ended: this one fails at once, as those in flight did
            _apply(gen, [], True, "error", EngineError(self._ended()))
            return gen
        gen_id = next(self._ids)
        gen.cancel = lambda: self._cancel(gen, gen_id)  # forwards to the process
        settings = dict(max_new_tokens=gen.max_new_tokens, temperature=gen.temperature, top_k=gen.top_k, top_p=gen.top_p,
                        stop_tokens=[tuple(s) if isinstance(s, (list, tuple)) else int(s) for s in gen.stop_tokens],
                        include_stop=gen.include_stop, seed=gen.seed, cached=gen.cached)
        with self._lock:
            self._gens[gen_id] = gen
        self._send(("add", gen_id, gen.prompt.tolist(), settings, list(stops), whole))
        return gen

    def close(self, timeout: float = 10.0) -> None:
        """End the process (the generations still running there end with it)."""
        with self._lock:
            closing, self._closed = not self._closed, True
        if closing:
            self._send(None)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._requests.close()

    def _cancel(self, gen: Generation, gen_id: int) -> None:
        gen._cancelled = True
        with self._lock:
            running = gen_id in self._gens
        if running:
            self._send(("cancel", gen_id))

    def _send(self, message: Any) -> None:
        try:
            with self._sending:
                _send(self._requests, message)
        except (OSError, ValueError):  # the process is gone: the receiving thread fails what was in flight
            pass

    def _receive_updates(self) -> None:
        while True:
            message = _receive(self._updates)
            if message is None:
                break
            for gen_id, released, done, reason, error in message[1]:
                with self._lock:
                    gen = self._gens.pop(gen_id, None) if done else self._gens.get(gen_id)
                if gen is not None:
                    _apply(gen, released, done, reason, None if error is None else EngineError(error))
        with self._lock:  # the process ended: nothing in flight will finish
            gens, self._gens = list(self._gens.values()), {}
            asked = self._closed
        for gen in gens:
            _apply(gen, [], True, "error", EngineError(self._ended()))
        if not asked and self.on_exit is not None:
            self.on_exit(self._ended())

    def _ended(self) -> str:
        self.process.join(1)
        return f"The token loop's process ended (exit code {self.process.exitcode})"


def _apply(gen: Generation, released: List[int], done: bool, reason: Optional[str], error: Optional[BaseException]) -> None:
    """What a Batcher does to `gen` when a step releases `released` (and maybe finishes it), here on this side."""
    if done:
        _finish(gen, released, reason, error)
    elif released:
        gen.tokens.extend(released)
        _notify(gen, released)


def _send(connection: Any, message: Any) -> None:
    """Send `message` (plain Python objects) to the other process. `Connection.send` makes a new multiprocessing
    pickler for each message, copying a dispatch table that torch fills with its reducers: a fifth of the server's
    time per request. A plain pickle needs none of that."""
    connection.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _receive(connection: Any) -> Optional[Any]:
    """The next message from the other process (sent by `_send`, over a pipe only the two hold); None once it has
    closed its end."""
    try:
        return pickle.loads(connection.recv_bytes())
    except (EOFError, OSError):
        return None


def _main(requests: Any, updates: Any, build: Build, args: Tuple[Any, ...]) -> None:
    """The process: build the batcher, report ready, then take requests and step until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server drains its requests first, then closes the pipe
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        batcher, decode = build(*args)
    except Exception as error:  # raised again by the server, which says it in one line if it is the user's
        if os.environ.get("LITGPT_DEBUG"):
            traceback.print_exc()
        try:
            _send(updates, ("failed", error))
        except Exception:  # an exception that does not pickle
            from litgpt.checkpoint import first_line

            _send(updates, ("failed", EngineError(first_line(error))))
        return
    model = batcher.model
    _send(updates, ("ready", dict(rows=batcher.max_batch_size, context=model.max_seq_length, device=str(model.lm_head.weight.device))))
    Loop(batcher, decode, updates).run(requests)


class Loop:
    """The process's side: Generations made from the requests, their updates gathered and sent once a step."""

    def __init__(self, batcher: Batcher, decode: Callable[[List[int]], str], updates: Any) -> None:
        self.batcher, self.decode, self.updates = batcher, decode, updates
        self.gens: Dict[int, Generation] = {}
        self.out: List[Tuple[int, List[int], bool, Optional[str], Optional[str]]] = []

    def run(self, requests: Any) -> None:
        while True:
            if not self.batcher.busy:  # idle: wait for work
                if not self.handle(_receive(requests)):
                    return
            while requests.poll():
                if not self.handle(_receive(requests)):
                    return
            try:
                self.batcher.step()
            except Exception:  # the failed sequences were told (finish_reason "error"); keep serving
                pass
            if self.out:
                _send(self.updates, ("updates", self.out))
                self.out = []

    def handle(self, message: Any) -> bool:
        """Act on one request; False to stop (told to, or the server is gone)."""
        if message is None:
            return False
        if message[0] == "cancel":
            gen = self.gens.get(message[1])
            if gen is not None:
                gen.cancel()
            return True
        _, gen_id, ids, settings, stops, whole = message
        gen = Generation(torch.tensor(ids, dtype=torch.long), **settings)
        held: List[int] = []  # a whole reply's tokens after its first ones, sent with its end

        def on_update(gen: Generation, released: List[int]) -> None:
            if whole and not gen.done and len(gen.tokens) > len(released):
                held.extend(released)
                return
            released = held + released
            error = None
            if gen.error is not None:
                from litgpt.checkpoint import first_line

                error = first_line(gen.error)
            self.out.append((gen_id, list(released), gen.done, gen.finish_reason, error))
            if gen.done:
                self.gens.pop(gen_id, None)

        gen.on_update = stop_at_text(self.decode, stops, then=on_update) if stops else on_update
        try:
            self.batcher.add(gen)
        except ValueError as error:  # checked on the server's side already; should it still fail, say so
            _finish(gen, [], "error", error)
            return True
        self.gens[gen_id] = gen
        return True

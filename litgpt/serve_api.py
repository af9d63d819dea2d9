"""The HTTP server behind `litgpt serve`: one event loop, and a continuous batcher per model copy in a process of its
own (or, with `--engine thread`, on a thread of the server's).

    client ─► BodyLimit (413 from Content-Length or the bytes read, before any parsing)
           ─► route: API key (401) ─► JSON (415/400) ─► every field checked, prompt laid out and tokenized (400 naming
              the field) ─► Pool.submit (503 with Retry-After when the queue is full)
           ─► a worker's token loop (`EngineProcess`, or a `BackgroundBatcher` thread): joins the running batch at
              its next step
           ─► tokens back through a Mailbox (one wake-up of the event loop per step) ─► the reply, whole or streamed

A request that waits longer than `timeout` for its first token is answered 504; a client that goes away (or a
request task that is cancelled) cancels its generation, and the batcher frees the row at its next step. On
SIGTERM/SIGINT uvicorn stops accepting, lets the requests in flight finish for `grace_period` seconds, then
cancels them. The token loop's process ignores those signals (Ctrl+C reaches the whole process group) and ends
when the server closes its pipe, however the server ended, so nothing outlives it or holds the port.

    POST api_path               {"prompt": ...} -> {"output": text}, or {"output": piece} lines with --stream
    POST /v1/chat/completions   OpenAI's chat completions (with --openai_spec), streamed as server-sent events
    GET  /v1/models, /info      what is served;  GET /health: "ok" (no API key needed)
"""

import asyncio
import json
import math
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Tuple, Union

import torch

from litgpt.engine.batcher import BackgroundBatcher, Batcher, Generation, cut_at_first, stop_at_text
from litgpt.prompts import Message, PromptStyle
from litgpt.tokenizer import IncrementalDecoder, Tokenizer

PREDICT_FIELDS = ("prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed")
MAX_TEMPERATURE = 100.0
GREEDY_BELOW = 1e-5  # temperatures this small sample as greedy: dividing logits by them overflows float32
CPU_ROWS = 8  # the default max_batch_size off CUDA
# While more than BUSY_STREAMS replies stream, each one's events come at most every STREAM_INTERVAL_S (its first
# and last at once); with fewer, each step's tokens are an event (up to MERGED_STEPS steps' when the loop is behind)
STREAM_INTERVAL_S = 0.02
BUSY_STREAMS = 8
MERGED_STEPS = 4
MAX_ROWS = 256  # the most rows the default max_batch_size picks
ROW_CONTEXT = 8192  # the default max_batch_size leaves each row at least this many tokens (or the model's context)
RETRY_AFTER_S = 1


class RequestError(Exception):
    """A request this server will not serve: the HTTP status, a message, and the request field at fault."""

    def __init__(self, status: int, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


@dataclass
class Settings:
    """How to generate for one request."""

    max_new_tokens: int
    temperature: float
    top_k: Optional[int]
    top_p: float
    stop: List[str] = field(default_factory=list)  # strings that end the reply (not included)
    seed: Optional[int] = None


@dataclass
class Job:
    """A checked request: the prompt's token ids and its settings."""

    ids: torch.Tensor
    settings: Settings


# ---------------------------------------------------------------------------------------------------------------
# checking requests


def integer(body: Dict[str, Any], name: str, default: Optional[int], minimum: int, nullable: bool = False) -> Optional[int]:
    value = body.get(name, default)
    if value is None and nullable:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum or value >= 2**63:
        raise _bad(f"'{name}' must be an integer of at least {minimum}" + (" or null" if nullable else "") + f", got {value!r}", name)
    return value


def number(body: Dict[str, Any], name: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    value = body.get(name, default)
    if value is None:
        value = default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (low < value if low_open else low <= value) or value > high:
        bracket = "(" if low_open else "["
        raise _bad(f"'{name}' must be a finite number in {bracket}{low:g}, {high:g}], got {value!r}", name)
    return float(value)


def text(value: Any, name: str) -> str:
    """`value` if it is a string that UTF-8 can encode (JSON lets a lone surrogate like \\ud800 through)."""
    if not isinstance(value, str):
        raise _bad(f"'{name}' must be a string, got {type(value).__name__}", name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"'{name}' is not valid Unicode (it holds a lone surrogate)", name) from None
    return value


def sampling(body: Dict[str, Any], defaults: Settings, vocab_size: int, max_new_tokens_name: str = "max_new_tokens") -> Settings:
    """The sampling fields of `body`, checked, with `defaults` for those it lacks."""
    temperature = number(body, "temperature", defaults.temperature, 0.0, MAX_TEMPERATURE)
    top_k = integer(body, "top_k", defaults.top_k, minimum=1, nullable=True)
    seed = integer(body, "seed", None, minimum=0, nullable=True)
    return Settings(
        max_new_tokens=integer(body, max_new_tokens_name, defaults.max_new_tokens, minimum=0),
        temperature=0.0 if temperature < GREEDY_BELOW else temperature,
        top_k=None if top_k is None else min(top_k, vocab_size),  # the same distribution, and no int64 overflow
        top_p=number(body, "top_p", defaults.top_p, 0.0, 1.0, low_open=True),
        seed=seed,
    )


class Prompter:
    """Turns a request's prompt (a string or chat messages) into token ids that fit the served context."""

    def __init__(self, tokenizer: Tokenizer, prompt_style: PromptStyle, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_style = prompt_style
        self.context_length = context_length

    def encode(self, prompt: Union[str, List[Message]], settings: Settings, name: str, max_name: str) -> torch.Tensor:
        """The token ids of `prompt` laid out in the prompt style; 400 if they and max_new_tokens do not fit."""
        try:
            ids = self.tokenizer.encode(self.prompt_style.apply(prompt))
        except Exception as error:  # a chat template's raise_exception, a conversation the style cannot lay out
            raise _bad(f"'{name}' cannot be laid out in the model's prompt format: {error}", name) from None
        if ids.numel() >= self.context_length:
            raise _bad(f"The prompt ({ids.numel()} tokens) does not fit the served context ({self.context_length} tokens)", name)
        if ids.numel() + settings.max_new_tokens > self.context_length:
            raise _bad(
                f"The prompt ({ids.numel()} tokens) plus {max_name} ({settings.max_new_tokens}) exceeds the served context "
                f"length ({self.context_length} tokens)", max_name,
            )
        return ids


def predict_job(body: Any, prompter: Prompter, defaults: Settings, vocab_size: int) -> Job:
    """A /predict body {"prompt": ..., optional settings} checked into a job."""
    if not isinstance(body, dict):
        raise _bad('The request body must be a JSON object like {"prompt": "..."}')
    unknown = sorted(set(body) - set(PREDICT_FIELDS))
    if unknown:
        raise _bad(f"Unknown field(s) {', '.join(unknown)}; the fields are {', '.join(PREDICT_FIELDS)}", unknown[0])
    if "prompt" not in body:
        raise _bad("'prompt' must be given, as a string", "prompt")
    prompt = text(body["prompt"], "prompt")
    settings = sampling(body, defaults, vocab_size)
    return Job(prompter.encode(prompt, settings, "prompt", "max_new_tokens"), settings)


# ---------------------------------------------------------------------------------------------------------------
# generating


class Mailbox:
    """Carries updates from batcher threads to the event loop, waking the loop once for all that a step posts."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._items: List[Tuple["Answer", List[int], bool]] = []

    def post(self, answer: "Answer", released: List[int], done: bool) -> None:
        with self._lock:
            self._items.append((answer, released, done))
            wake = len(self._items) == 1
        if wake:
            self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for answer, released, done in items:
            if released:
                answer.pending.append(released)
            answer.finished |= done
            answer.updated.set()


class Worker:
    """One model copy and its token loop: in a process of its own (`engine`, an `EngineProcess`), or on a thread of
    this one over `llm`'s model. `rows` sequences decode together, each within `context` tokens; `llm` gives the
    tokenizer and prompt style (without `engine`, the model too)."""

    def __init__(self, llm: Any, rows: int = 0, engine: Optional[Any] = None) -> None:
        self.llm = llm
        self.engine = engine
        if engine is None:
            self.rows, self.context = rows, llm.model.max_seq_length
            self.batcher = BackgroundBatcher(Batcher(llm.model, rows, step=llm.decode_step))
        else:
            self.rows, self.context = engine.info["rows"], engine.info["context"]
            self.batcher = engine
        self.stop_tokens = llm.prompt_style.stop_tokens(llm.tokenizer)
        self.in_flight = 0  # submitted and not yet finished (event-loop side)

    def submit(self, gen: Generation, stops: List[str], whole: bool = False) -> None:
        """Queue `gen`, cancelled once its decoded text holds one of `stops`; ValueError if it can never run. `whole`:
        only its first tokens and its end are wanted (an engine process sends only those)."""
        if self.engine is not None:
            self.engine.submit(gen, stops, whole)
            return
        if stops:
            gen.on_update = stop_at_text(self.llm.tokenizer.decode, stops, then=gen.on_update)
        self.batcher.submit(gen)

    def close(self) -> None:
        self.batcher.close()


class Pool:
    """The workers, and the bound on requests in flight: their rows plus `max_queue` waiting."""

    def __init__(self, workers: List[Worker], max_queue: int, timeout: float) -> None:
        self.workers = workers
        self.rows = sum(w.rows for w in workers)
        self.max_queue = max_queue
        self.timeout = timeout
        self._mailbox: Optional[Mailbox] = None

    def start(self, job: Job, whole: bool = False) -> "Answer":
        """Hand `job` to the least busy worker; 503 when every row is taken and the queue is full. `whole`: the
        reply is wanted only whole (not streamed)."""
        if sum(w.in_flight for w in self.workers) >= self.rows + self.max_queue:
            raise RequestError(503, f"The server is busy ({self.rows} requests generating, {self.max_queue} waiting); retry later")
        if self._mailbox is None:
            self._mailbox = Mailbox(asyncio.get_running_loop())
        worker = min(self.workers, key=lambda w: w.in_flight / w.rows)
        answer = Answer(worker, job, self._mailbox, self.timeout, whole)
        answer.open()
        return answer


class Answer:
    """One request's generation as the event loop sees it: token ids as they come, then how it finished.

    `Pool.start` opens it; whoever answers the request closes it when the reply is complete, the client went away or
    the task was cancelled, which cancels the generation and frees its row at the batcher's next step.
    """

    streaming = 0  # replies being streamed (`updates`), on the event loop's thread

    def __init__(self, worker: Worker, job: Job, mailbox: Mailbox, timeout: float, whole: bool = False) -> None:
        s = job.settings
        self.worker, self.job, self.timeout = worker, job, timeout
        self.updated = asyncio.Event()
        self.pending: List[List[int]] = []  # each step's released ids, delivered and not yet taken by `updates`
        self.finished = False
        self.cut = False  # a stop string ended the reply's text
        self.whole = whole  # the reply is wanted only whole: the batcher posts only its first tokens and its end
        posted = [False]
        self.gen = Generation(job.ids, s.max_new_tokens, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                              stop_tokens=worker.stop_tokens, seed=s.seed)

        def on_update(gen: Generation, released: List[int]) -> None:  # on the batcher's (or the engine's receiving) thread
            if gen.done or not self.whole or not posted[0]:  # a whole reply wakes the event loop twice, not every step
                posted[0] = True
                mailbox.post(self, list(released), gen.done)

        self.gen.on_update = on_update

    def open(self) -> None:
        """Submit the generation (a request for no tokens finishes at once); `close` must follow."""
        self.worker.in_flight += 1
        self._closed = False
        if self.job.settings.max_new_tokens == 0:
            self.finished = True
            return
        try:
            self.worker.submit(self.gen, self.job.settings.stop, self.whole)
        except ValueError as error:  # the batcher's own checks, which the request's already cover
            self.close()
            raise _bad(str(error)) from None

    def close(self) -> None:
        """Cancel the generation if it is still going (its row is freed at the batcher's next step); idempotent."""
        if not self._closed:
            self._closed = True
            self.gen.cancel()
            self.worker.in_flight -= 1

    async def started(self) -> None:
        """Wait for the first tokens (or the end); 504 if they take longer than the server's timeout."""
        if self.finished or self.pending:
            return
        try:
            await asyncio.wait_for(self.updated.wait(), self.timeout)
        except asyncio.TimeoutError:
            self.close()
            raise RequestError(504, f"No token within the server's timeout ({self.timeout:g} s): the server is busy; retry later") from None

    async def updates(self) -> AsyncIterator[List[int]]:
        """The token ids released since the last update, until the generation ends. While few replies stream, each
        step's alone (up to MERGED_STEPS steps' in one when the event loop falls behind). While more than
        BUSY_STREAMS do: the first at once, then what the steps released in the last STREAM_INTERVAL_S at most, and
        the end at once. Each stream event costs the event loop's thread a socket write, which the batching thread
        waits for (the interpreter lock): an event a step for each of 64 streamed replies cost a busy server about
        40% of its tokens, while 50 events a second read as smoothly."""
        loop = asyncio.get_running_loop()
        last = -STREAM_INTERVAL_S
        Answer.streaming += 1
        try:
            while self.pending or not self.finished:
                if not self.pending:
                    await self.updated.wait()
                    self.updated.clear()
                busy = Answer.streaming > BUSY_STREAMS
                wait = last + STREAM_INTERVAL_S - loop.time()
                if busy and wait > 0 and not self.finished:
                    await asyncio.sleep(wait)
                taken, self.pending = self.pending, []
                group = max(1, len(taken)) if busy else 1 if len(taken) <= 2 else MERGED_STEPS
                for start in range(0, len(taken), group):
                    yield [i for released in taken[start : start + group] for i in released]
                last = loop.time()
        finally:
            Answer.streaming -= 1
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self.gen.finish_reason == "error":
            raise RequestError(500, f"Generation failed: {self.gen.error}")

    @property
    def finish_reason(self) -> str:
        """OpenAI's: "length" when max_new_tokens ended the reply, else "stop" (a stop token or string).

        A reply that a stop string cut short was cancelled by `stop_at_text`, unless the limit came in the same step.
        """
        if not self.cut and (self.job.settings.max_new_tokens == 0 or self.gen.finish_reason == "length"):
            return "length"
        return "stop"

    @property
    def completion_tokens(self) -> int:
        return len(self.gen.tokens)

    async def text(self) -> str:
        """The whole reply, as `LLM.generate` returns it."""
        while not self.finished:
            await self.updated.wait()
            self.updated.clear()
        self._raise_if_failed()
        reply = self.worker.llm.tokenizer.decode(list(self.gen.tokens))  # every id, released by the batcher's thread
        cut = cut_at_first(reply, self.job.settings.stop)
        self.cut = len(cut) < len(reply)
        return cut

    async def pieces(self) -> AsyncIterator[str]:
        """The reply in pieces as they come, never splitting a character or showing part of a stop string."""
        decoder = IncrementalDecoder(self.worker.llm.tokenizer)
        stops = self.job.settings.stop
        reply, sent = "", 0
        async for released in self.updates():
            reply += "".join(decoder.add(i) for i in released)
            cut = cut_at_first(reply, stops)
            end = len(cut) if len(cut) < len(reply) else len(reply) - _held_back(reply, stops)
            if end > sent:
                yield reply[sent:end]
                sent = end
            if len(cut) < len(reply):
                self.cut = True
                return
        reply += decoder.flush()
        cut = cut_at_first(reply, stops)
        self.cut = len(cut) < len(reply)
        if len(cut) > sent:
            yield cut[sent:]


def _held_back(reply: str, stops: List[str]) -> int:
    """How many characters at the end of `reply` could be the start of a stop string."""
    for n in range(min(len(reply), max((len(s) for s in stops), default=1) - 1), 0, -1):
        if any(stop.startswith(reply[-n:]) for stop in stops):
            return n
    return 0


def _bad(message: str, field: Optional[str] = None) -> RequestError:
    return RequestError(400, message, field)


# ---------------------------------------------------------------------------------------------------------------
# the OpenAI chat completions request


CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")
UNSUPPORTED = {  # OpenAI fields this server cannot honour: refused unless they hold the value that means "off"
    "frequency_penalty": (0, 0.0, None), "presence_penalty": (0, 0.0, None), "logprobs": (False, None),
    "top_logprobs": (0, None), "logit_bias": (None,), "tools": (None,), "functions": (None,),
}


@dataclass
class ChatJob:
    job: Job
    stream: bool
    include_usage: bool


def chat_job(body: Any, prompter: Prompter, defaults: Settings, vocab_size: int) -> ChatJob:
    """An OpenAI chat completions body checked into a job (unknown fields are ignored, as OpenAI's clients expect)."""
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object with 'messages'")
    for name, off in UNSUPPORTED.items():
        if name in body and body[name] not in off and body[name] not in ({}, []):
            raise _bad(f"'{name}' is not supported by this server; leave it out", name)
    if body.get("n") not in (None, 1):
        raise _bad(f"'n' must be 1: this server generates one choice per request, got {body['n']!r}", "n")
    if not isinstance(body.get("stream", False), bool):
        raise _bad("'stream' must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise _bad("'stream_options' must be an object like {\"include_usage\": true}", "stream_options")
    limit = next((n for n in ("max_completion_tokens", "max_tokens") if body.get(n) is not None), "max_completion_tokens")
    settings = sampling(body, defaults, vocab_size, max_new_tokens_name=limit)
    settings.stop = _stops(body.get("stop"))
    ids = prompter.encode(_messages(body.get("messages")), settings, "messages", limit)
    return ChatJob(Job(ids, settings), body.get("stream", False), options.get("include_usage", False))


def _messages(messages: Any) -> List[Message]:
    """OpenAI chat messages as {"role", "content"} dicts of text."""
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list of {\"role\", \"content\"} objects", "messages")
    converted = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
            raise _bad(f"'{where}' must be an object with a 'role' of {', '.join(CHAT_ROLES)}", where)
        content = message.get("content")
        if isinstance(content, list):
            if any(not isinstance(part, dict) or part.get("type") != "text" for part in content):
                raise _bad(f"'{where}.content': only text parts are supported", f"{where}.content")
            content = "".join(text(part.get("text"), f"{where}.content") for part in content)
        elif content is not None:
            text(content, f"{where}.content")
        role = "system" if message["role"] == "developer" else message["role"]
        converted.append({"role": role, "content": content or ""})
    return converted


def _stops(stop: Any) -> List[str]:
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else [] if stop is None else None
    if stops is None or len(stops) > 16:
        raise _bad("'stop' must be a string or a list of at most 16 strings", "stop")
    return [s for s in (text(s, "stop") for s in stops) if s]


# ---------------------------------------------------------------------------------------------------------------
# HTTP


@dataclass
class Served:
    """What the routes serve: the workers, the prompt layout, the default settings and the server's options."""

    pool: Pool
    prompter: Prompter
    defaults: Settings
    vocab_size: int
    model_name: str
    api_path: str = "/predict"
    stream: bool = False
    openai_spec: bool = False
    api_key: Optional[str] = None
    max_body_bytes: int = 4 * 2**20


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, from its Content-Length before reading, else while reading."""

    def __init__(self, app: Callable, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        error = RequestError(413, f"The request body is larger than the server's limit of {self.max_bytes} bytes (--max_body_bytes)")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            from starlette.responses import JSONResponse

            response = JSONResponse({"detail": error.message}, 413, headers={"Connection": "close"})
            return await response(scope, receive, send)
        read = 0

        async def counted() -> Dict[str, Any]:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > self.max_bytes:
                raise error  # inside the route's body read: answered there
            return message

        await self.app(scope, counted, send)


def build_app(served: Served) -> Any:
    """The Starlette app: the routes, each behind the API key but /health, and the body limit around them all."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def health(request: Any) -> Any:
        return PlainTextResponse("ok")

    async def info(request: Any) -> Any:
        workers = served.pool.workers
        return JSONResponse({"model": served.model_name, "max_batch_size": min(w.rows for w in workers), "model_copies": len(workers),
                             "context_length": served.prompter.context_length, "max_queue": served.pool.max_queue})

    async def models(request: Any) -> Any:
        return JSONResponse({"object": "list", "data": [{"id": served.model_name, "object": "model", "created": 0, "owned_by": "litgpt"}]})

    from litgpt.chat_page import route as chat_page_route

    routes = [Route("/health", health), Route("/info", _guarded(served, info, openai=False)), chat_page_route()]
    if served.openai_spec:
        routes += [Route("/v1/models", _guarded(served, models, openai=True)),
                   Route("/v1/chat/completions", _guarded(served, lambda r: _chat(served, r), openai=True), methods=["POST"])]
    else:
        routes.append(Route(served.api_path, _guarded(served, lambda r: _predict(served, r), openai=False), methods=["POST"]))
    return Starlette(routes=routes, middleware=[Middleware(BodyLimit, max_bytes=served.max_body_bytes)])


def _guarded(served: Served, handler: Callable, openai: bool) -> Callable:
    """`handler` behind the API key, its RequestErrors answered as JSON (OpenAI's error object on OpenAI routes)."""
    from starlette.responses import JSONResponse

    async def endpoint(request: Any) -> Any:
        try:
            if served.api_key is not None:
                expected = f"Bearer {served.api_key}".encode()
                if not secrets.compare_digest(request.headers.get("authorization", "").encode(), expected):
                    raise RequestError(401, "Missing or wrong API key: send the header 'Authorization: Bearer <api_key>'")
            return await handler(request)
        except RequestError as error:
            headers = {"Retry-After": str(RETRY_AFTER_S)} if error.status == 503 else None
            kind = "invalid_request_error" if error.status < 500 else "server_error"
            content = {"error": {"message": error.message, "type": kind, "param": error.field, "code": None}} if openai else {"detail": error.message}
            return JSONResponse(content, error.status, headers=headers)

    return endpoint


async def _read_json(request: Any) -> Tuple[Any, int]:
    """The request's JSON body and its size in bytes; 415 if it is not sent as JSON, 400 if it does not parse."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise RequestError(415, "Send the request as JSON, with the header 'Content-Type: application/json'")
    raw = await request.body()
    try:
        return await _off_loop(len(raw), json.loads, raw), len(raw)
    except UnicodeDecodeError:
        raise _bad("The request body is not valid UTF-8") from None
    except ValueError as error:
        raise _bad(f"The request body must be JSON: {error}") from None


async def _off_loop(size: int, fn: Callable, *args: Any) -> Any:
    """`fn(*args)`, on a thread when the input is large, so that parsing or tokenizing it never stalls other requests."""
    return await asyncio.to_thread(fn, *args) if size > 64 * 1024 else fn(*args)


async def _unless_disconnected(request: Any, work: Any) -> Tuple[bool, Any]:
    """(True, the result of awaiting `work`), or (False, None) as soon as the client disconnects (cancelling `work`)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    return (True, task.result()) if task.done() and not task.cancelled() else (False, None)


async def _predict(served: Served, request: Any) -> Any:
    from starlette.responses import JSONResponse

    body, size = await _read_json(request)
    job = await _off_loop(size, predict_job, body, served.prompter, served.defaults, served.vocab_size)
    answer = served.pool.start(job, whole=not served.stream)
    stream = (_lines(answer), "application/x-ndjson") if served.stream else None
    return await _respond(request, answer, stream, lambda output: JSONResponse({"output": output}))


async def _respond(request: Any, answer: Answer, stream: Optional[Tuple[AsyncIterator[str], str]], reply: Callable[[str], Any]) -> Any:
    """Wait for the first tokens, then stream (`stream`: the chunks and their media type) or answer with `reply(text)`
    once the reply is whole; a client that went away gets 499. `answer` is closed however it ends."""
    from starlette.responses import Response

    streaming = False
    try:
        connected, _ = await _unless_disconnected(request, answer.started())
        if not connected:
            return Response(status_code=499)
        if stream is not None:
            streaming = True  # the response closes the answer
            return _streamed(answer, *stream)
        connected, text = await _unless_disconnected(request, answer.text())
        return reply(text) if connected else Response(status_code=499)
    finally:
        if not streaming:
            answer.close()


def _streamed(answer: Answer, chunks: AsyncIterator[str], media_type: str) -> Any:
    """A streaming response of `chunks` that closes `answer` when it ends, however it ends."""
    from starlette.background import BackgroundTask
    from starlette.responses import StreamingResponse

    async def body() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            answer.close()

    return StreamingResponse(body(), media_type=media_type, background=BackgroundTask(answer.close))


async def _lines(answer: Answer) -> AsyncIterator[str]:
    try:
        async for piece in answer.pieces():
            yield json.dumps({"output": piece}) + "\n"
    except RequestError as error:  # the generation failed after the reply began
        yield json.dumps({"error": error.message}) + "\n"


async def _chat(served: Served, request: Any) -> Any:
    from starlette.responses import JSONResponse

    body, size = await _read_json(request)
    chat = await _off_loop(size, chat_job, body, served.prompter, served.defaults, served.vocab_size)
    answer = served.pool.start(chat.job, whole=not chat.stream)
    stream = (_chat_events(answer, served.model_name, chat.include_usage), "text/event-stream") if chat.stream else None

    def reply(content: str) -> Any:
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": answer.finish_reason, "logprobs": None}
        return JSONResponse({**_head("chat.completion", served.model_name), "choices": [choice], "usage": _usage(answer)})

    return await _respond(request, answer, stream, reply)


async def _chat_events(answer: Answer, model_name: str, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events of chat.completion.chunk objects, a usage chunk if asked, then [DONE]."""
    head = _head("chat.completion.chunk", model_name)
    extra = {"usage": None} if include_usage else {}

    def event(delta: Dict[str, Any], finish_reason: Optional[str]) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return f"data: {json.dumps({**head, 'choices': [choice], **extra})}\n\n"

    yield event({"role": "assistant", "content": ""}, None)
    try:
        async for piece in answer.pieces():
            yield event({"content": piece}, None)
    except RequestError as error:  # the generation failed after the reply began
        yield f"data: {json.dumps({'error': {'message': error.message, 'type': 'server_error', 'param': None, 'code': None}})}\n\n"
        return
    yield event({}, answer.finish_reason)
    if include_usage:
        yield f"data: {json.dumps({**head, 'choices': [], 'usage': _usage(answer)})}\n\n"
    yield "data: [DONE]\n\n"


def _head(kind: str, model_name: str) -> Dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model_name}


def _usage(answer: Answer) -> Dict[str, int]:
    prompt, completion = int(answer.job.ids.numel()), answer.completion_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

"""The litserve APIs behind `litgpt serve`, and the checks every request passes before it reaches the model.

    client ─► API server process: `authorize` (API key, then the request's fields and length: 4xx JSON errors)
           ─► inference worker: `decode_request` (prompt style + tokens) ─► `predict` (submits to the worker's
              `BackgroundBatcher`, awaits its tokens) ─► `encode_response`

Each worker holds one model and one continuous batcher; litserve runs the APIs asynchronously, so every request
in flight waits on the batcher at once and joins the running batch at the next decode step.

    PredictAPI        POST /predict {"prompt": ...} -> {"output": text}
    StreamPredictAPI  the same, streamed as {"output": piece} lines
    OpenAIChatAPI     POST /v1/chat/completions (litserve's OpenAISpec), streamed or not

Imported by `litgpt serve` only when it runs (litserve workers import it to unpickle the API).
"""

import asyncio
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Optional, Union

import torch
from fastapi import HTTPException, Request
from litserve import LitAPI

from litgpt.generate.batcher import Batcher, BackgroundBatcher, Generation, cut_at_first, stop_at_text
from litgpt.generate.sampling import check_sampling_args
from litgpt.prompts import Message, PromptStyle
from litgpt.tokenizer import IncrementalDecoder, Tokenizer

PREDICT_FIELDS = ("prompt", "max_new_tokens", "temperature", "top_k", "top_p")


@dataclass
class Settings:
    """How to generate for one request."""

    max_new_tokens: int
    temperature: float
    top_k: Optional[int]
    top_p: float
    stop: List[str] = field(default_factory=list)  # strings that end the reply (not included)


@dataclass
class Job:
    """A decoded request: the prompt's token ids and its settings."""

    ids: torch.Tensor
    settings: Settings


class Prompter:
    """Turns a request's prompt (a string or chat messages) into token ids, in the model's prompt style."""

    def __init__(self, tokenizer: Tokenizer, prompt_style: PromptStyle, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_style = prompt_style
        self.context_length = context_length

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: Path) -> "Prompter":
        from litgpt.config import Config

        config = Config.from_checkpoint(checkpoint_dir)
        return cls(Tokenizer(checkpoint_dir), PromptStyle.from_checkpoint(checkpoint_dir, config), config.block_size)

    def encode(self, prompt: Union[str, List[Message]], settings: Settings) -> torch.Tensor:
        """The token ids of `prompt`; HTTP 400 if they and `settings.max_new_tokens` do not fit the context."""
        try:
            ids = self.tokenizer.encode(self.prompt_style.apply(prompt))
        except ValueError as error:  # e.g. a conversation the style cannot lay out
            raise _bad_request(str(error)) from None
        if ids.numel() + settings.max_new_tokens > self.context_length:
            raise _bad_request(
                f"The prompt ({ids.numel()} tokens) plus max_new_tokens ({settings.max_new_tokens}) exceeds the model's "
                f"context length ({self.context_length} tokens)"
            )
        return ids


class _GenerationAPI(LitAPI):
    """What the three APIs share: the model and its batcher in the worker, request checks in the API server.

    Args:
        checkpoint_dir: the checkpoint folder.
        quantize, precision: as in `LLM.distribute`.
        defaults: the settings of requests that do not give their own.
        max_batch_size: the most requests decoded together.
        api_key: when set, requests must send `Authorization: Bearer <api_key>`.
        api_path, stream, spec: as in litserve's `LitAPI`.
    """

    def __init__(
        self,
        checkpoint_dir: Path,
        quantize: Optional[str],
        precision: Optional[str],
        defaults: Settings,
        max_batch_size: int,
        api_key: Optional[str] = None,
        api_path: str = "/predict",
        stream: bool = False,
        spec: Any = None,
        compile: bool = False,
    ) -> None:
        # litserve's own (static) batching stays off: the batcher below batches continuously
        super().__init__(api_path=api_path, stream=stream, spec=spec, enable_async=True)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.quantize, self.precision = quantize, precision
        self.defaults = defaults
        self.batch_rows = max_batch_size
        self.api_key = api_key
        self.compile = compile
        self._prompter: Optional[Prompter] = None  # the API server's, built on its first request

    # ---- inference worker
    def setup(self, device: str) -> None:
        from litgpt.api import LLM

        accelerator, _, index = device.partition(":")
        llm = LLM.load(str(self.checkpoint_dir), distribute=None)
        llm.distribute(accelerator=accelerator, devices=[int(index)] if index else 1, precision=self.precision, quantize=self.quantize,
                       compile=self.compile)
        self.llm = llm
        self._prompter = Prompter(llm.tokenizer, llm.prompt_style, llm.model.max_seq_length)
        self.stop_tokens = llm.prompt_style.stop_tokens(llm.tokenizer)
        self.batcher = BackgroundBatcher(Batcher(llm.model, self.batch_rows, step=llm.decode_step))

    async def _token_updates(self, job: Job) -> AsyncIterator[List[int]]:
        """The token ids released at each step of `job`'s generation; cancels it if the consumer stops early."""
        loop = asyncio.get_running_loop()
        updates: "asyncio.Queue[tuple]" = asyncio.Queue()
        s = job.settings
        gen = Generation(
            job.ids, s.max_new_tokens, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, stop_tokens=self.stop_tokens
        )
        text_stop = stop_at_text(self.llm.tokenizer.decode, s.stop) if s.stop else None

        def on_update(gen: Generation, released: List[int]) -> None:  # runs on the batcher's thread
            if text_stop is not None:
                text_stop(gen, released)
            loop.call_soon_threadsafe(updates.put_nowait, (list(released), gen.done))

        gen.on_update = on_update
        try:
            self.batcher.submit(gen)
        except ValueError as error:
            raise _bad_request(str(error)) from None
        try:
            done = False
            while not done:
                released, done = await updates.get()
                if released:
                    yield released
            if gen.finish_reason == "error":
                raise HTTPException(500, f"Generation failed: {gen.error}")
        finally:
            gen.cancel()  # a no-op once done; frees the row when the client is gone

    async def _text(self, job: Job) -> str:
        """The whole reply, as `LLM.generate` returns it."""
        ids = [i async for released in self._token_updates(job) for i in released]
        return cut_at_first(self.llm.tokenizer.decode(ids), job.settings.stop)

    async def _pieces(self, job: Job) -> AsyncIterator[str]:
        """The reply in pieces as they are generated, never splitting a character or showing part of a stop string."""
        decoder = IncrementalDecoder(self.llm.tokenizer)
        stops = job.settings.stop
        text, sent = "", 0
        async for released in self._token_updates(job):
            text += "".join(decoder.add(i) for i in released)
            cut = cut_at_first(text, stops)
            end = len(cut) if len(cut) < len(text) else len(text) - _held_back(text, stops)
            if end > sent:
                yield text[sent:end]
                sent = end
            if len(cut) < len(text):
                return
        text = cut_at_first(text + decoder.flush(), stops)
        if len(text) > sent:
            yield text[sent:]

    # ---- API server
    async def authorize(self, request: Request) -> None:
        """Reject requests without the API key (401), then bad generation requests (400), before any model work."""
        if self.api_key is not None:
            expected = f"Bearer {self.api_key}".encode()
            if not secrets.compare_digest(request.headers.get("authorization", "").encode(), expected):
                raise HTTPException(401, "Missing or wrong API key: send the header 'Authorization: Bearer <api_key>'")
        if request.method == "POST" and request.url.path == self.api_path:
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                raise HTTPException(415, "Send the request as JSON, with the header 'Content-Type: application/json'")
            try:
                body = await request.json()
            except ValueError:
                raise _bad_request("The request body must be JSON") from None
            if self._prompter is None:
                self._prompter = Prompter.from_checkpoint(self.checkpoint_dir)
            self._check(body, self._prompter)

    def _check(self, body: Any, prompter: Prompter) -> None:
        """Raise HTTP 4xx for a request body this API cannot serve."""
        raise NotImplementedError


class PredictAPI(_GenerationAPI):
    """POST {"prompt": "...", optional "max_new_tokens", "temperature", "top_k", "top_p"} -> {"output": "..."}."""

    def _check(self, body: Any, prompter: Prompter) -> None:
        self._job(body, prompter)

    def _job(self, body: Any, prompter: Prompter) -> Job:
        if not isinstance(body, dict):
            raise _bad_request('The request body must be a JSON object like {"prompt": "..."}')
        unknown = sorted(set(body) - set(PREDICT_FIELDS))
        if unknown:
            raise _bad_request(f"Unknown field(s) {', '.join(unknown)}; the fields are {', '.join(PREDICT_FIELDS)}")
        if not isinstance(body.get("prompt"), str):
            raise _bad_request("'prompt' must be given, as a string")
        d = self.defaults
        settings = Settings(
            max_new_tokens=_integer(body, "max_new_tokens", d.max_new_tokens, minimum=1),
            temperature=_number(body, "temperature", d.temperature),
            top_k=_integer(body, "top_k", d.top_k, minimum=1, nullable=True),
            top_p=_number(body, "top_p", d.top_p),
        )
        _check_sampling(settings)
        return Job(prompter.encode(body["prompt"], settings), settings)

    async def decode_request(self, request: Dict[str, Any]) -> Job:  # the annotation makes litserve parse a JSON object
        return self._job(request, self._prompter)

    async def predict(self, job: Job) -> str:
        return await self._text(job)

    async def encode_response(self, output: str) -> Dict[str, str]:
        return {"output": output}


class StreamPredictAPI(PredictAPI):
    """As `PredictAPI`, the reply streamed as {"output": piece} lines."""

    async def predict(self, job: Job) -> AsyncIterator[str]:
        async for piece in self._pieces(job):
            yield piece

    async def encode_response(self, pieces: AsyncIterator[str]):  # litserve makes a return annotation the response model
        async for piece in pieces:
            yield {"output": piece}


class OpenAIChatAPI(_GenerationAPI):
    """OpenAI's chat completions: the messages laid out by the model's chat template or prompt style.

    Honours `temperature`, `top_p`, `max_completion_tokens` (or `max_tokens`) and `stop`; top-k is the server's.
    """

    def _check(self, body: Any, prompter: Prompter) -> None:
        from litserve.specs.openai import ChatCompletionRequest
        from pydantic import ValidationError

        try:
            request = ChatCompletionRequest.model_validate(body)
        except ValidationError:
            return  # the endpoint itself answers 422 with the details
        self._job(request, prompter)

    def _job(self, request: Any, prompter: Prompter) -> Job:
        given = request.model_fields_set
        d = self.defaults
        max_new_tokens = request.max_completion_tokens or request.max_tokens or d.max_new_tokens
        if max_new_tokens < 1:
            raise _bad_request(f"max_completion_tokens must be at least 1, got {max_new_tokens}")
        stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        settings = Settings(
            max_new_tokens=max_new_tokens,
            temperature=request.temperature if "temperature" in given and request.temperature is not None else d.temperature,
            top_k=d.top_k,
            top_p=request.top_p if "top_p" in given and request.top_p is not None else d.top_p,
            stop=[s for s in stop if s],
        )
        _check_sampling(settings)
        return Job(prompter.encode(_messages(request.messages), settings), settings)

    async def decode_request(self, request):  # a ChatCompletionRequest; unannotated as litserve reads the annotation
        return self._job(request, self._prompter)

    async def predict(self, job: Job) -> AsyncIterator[str]:
        async for piece in self._pieces(job):
            yield piece


def _messages(messages: List[Any]) -> List[Message]:
    """OpenAI chat messages as {"role", "content"} dicts of text."""
    converted = []
    for message in messages:
        content = message.content
        if isinstance(content, list):
            if any(getattr(part, "type", None) != "text" for part in content):
                raise _bad_request("Only text message content is supported")
            content = "".join(part.text for part in content)
        role = "system" if message.role == "developer" else message.role
        converted.append({"role": role, "content": content or ""})
    return converted


def _held_back(text: str, stops: List[str]) -> int:
    """How many characters at the end of `text` could be the start of a stop string."""
    for n in range(min(len(text), max((len(s) for s in stops), default=1) - 1), 0, -1):
        if any(stop.startswith(text[-n:]) for stop in stops):
            return n
    return 0


def _integer(body: Dict[str, Any], name: str, default: Optional[int], minimum: int, nullable: bool = False) -> Optional[int]:
    value = body.get(name, default)
    if value is None and nullable:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _bad_request(f"'{name}' must be an integer of at least {minimum}" + (" or null" if nullable else "") + f", got {value!r}")
    return value


def _number(body: Dict[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _bad_request(f"'{name}' must be a number, got {value!r}")
    return float(value)


def _check_sampling(settings: Settings) -> None:
    try:
        check_sampling_args(settings.temperature, settings.top_k, settings.top_p)
    except ValueError as error:
        raise _bad_request(str(error)) from None


def _bad_request(message: str) -> HTTPException:
    return HTTPException(400, message)

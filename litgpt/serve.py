"""`litgpt serve`: an HTTP server that generates with a checkpoint, batching concurrent requests continuously.

    curl http://127.0.0.1:8000/predict -H 'Content-Type: application/json' -d '{"prompt": "What do llamas eat?"}'

The routes, request checks and limits are in `serve_api.py`; this module loads the model copies, sizes their
batches and runs the server.
"""

import sys
from pathlib import Path
from typing import Any, Literal, Optional, Tuple, Union

Quantize = Optional[Literal["bnb.nf4", "bnb.nf4-dq", "bnb.fp4", "bnb.fp4-dq", "bnb.int8"]]


def serve(
    checkpoint_dir: Path,
    quantize: Quantize = None,
    precision: Optional[str] = None,
    temperature: float = 0.8,
    top_k: int = 50,
    top_p: float = 1.0,
    max_new_tokens: int = 50,
    devices: Union[int, str] = 1,
    accelerator: str = "auto",
    port: int = 8000,
    stream: bool = False,
    openai_spec: bool = False,
    access_token: Optional[str] = None,
    api_path: Optional[str] = "/predict",
    timeout: int = 30,
    generate_strategy: Optional[Literal["sequential", "tensor_parallel"]] = None,
    host: str = "127.0.0.1",
    max_batch_size: Optional[int] = None,
    api_key: Optional[str] = None,
    workers_per_device: int = 1,
    compile: Optional[bool] = None,
    max_body_bytes: int = 4 * 2**20,
    max_queue: Optional[int] = None,
    grace_period: float = 30.0,
    engine: Literal["process", "thread"] = "process",
) -> None:
    """Serve a model over HTTP: POST /predict {"prompt": ...} answers {"output": ...}.

    A request may set its own "max_new_tokens", "temperature", "top_k", "top_p" and "seed". Requests that arrive
    while others are generating join the running batch at the next decode step (continuous batching). SIGTERM or
    SIGINT stops accepting requests and lets those in flight finish for `grace_period` seconds.

    Args:
        checkpoint_dir: A checkpoint folder (lit_model.pth, model_config.yaml, tokenizer files), ORG/NAME under
            checkpoints/, or a model name from `litgpt download list` (downloaded when missing).
        quantize: bitsandbytes quantization of the weights (CUDA only): bnb.nf4, bnb.nf4-dq, bnb.fp4, bnb.fp4-dq, bnb.int8.
        precision: bf16-true, 16-true or 32-true; default bf16 on a GPU that has it, else 32-true.
        temperature: The default temperature: 0 is greedy, higher is more random (at most 100).
        top_k: The default top-k: sample only among the k most likely tokens.
        top_p: The default top-p: sample only among the most likely tokens whose probabilities add up to top_p.
        max_new_tokens: The default number of tokens to generate at most.
        devices: How many devices to serve on ("auto": all); each holds a whole copy of the model.
        accelerator: "auto", "cpu", "cuda" (or "gpu") or "mps".
        port: The port to listen on (1024-65535).
        stream: Stream each reply as {"output": piece} lines.
        openai_spec: Serve OpenAI's chat completions API at /v1/chat/completions (streamed or not, as the client
            asks) and /v1/models, laying out the messages with the model's chat template or prompt style.
        access_token: Hugging Face token for gated models, when downloading.
        api_path: The path of the generation endpoint (without --openai_spec).
        timeout: Seconds a request may wait for its first token (in the queue) before it is answered 504.
        generate_strategy: Splitting one model over several devices is not supported here.
        host: The address to listen on: 127.0.0.1 (this machine only), 0.0.0.0 or :: (every interface).
        max_batch_size: The most requests generated together by each model copy. Default: on CUDA, as many as the
            memory left after the weights holds KV caches for (at most 256, each row at least 8,192 tokens or the
            model's context); elsewhere 8. The served context is what that memory gives each row.
        api_key: Answer 401 to requests without the header `Authorization: Bearer <api_key>` (/health stays open).
        workers_per_device: Model copies per device, each with its own batch.
        compile: Compile the decode step with torch.compile: a step for many requests about twice as fast, for a
            start-up up to a minute longer (compiling and warming up happen before the server answers). Default: on for
            CUDA GPUs without --quantize; false turns it off. On GPUs the step replays CUDA graphs either way.
        max_body_bytes: Answer 413 to request bodies larger than this, before reading them.
        max_queue: Requests that may wait for a batch row beyond those generating; more are answered 503 with
            Retry-After. Default: four times the rows, at least 64.
        grace_period: Seconds that requests in flight may take to finish after SIGTERM/SIGINT.
        engine: Where each model copy's token loop runs: "process", a process of its own, so that handling HTTP
            never holds it up; "thread", a thread of the server's process (which then shares Python's interpreter
            lock with the HTTP event loop).
    """
    from litgpt.serve_api import MAX_TEMPERATURE

    if not (0 <= temperature <= MAX_TEMPERATURE) or not (0 < top_p <= 1) or top_k < 1:
        raise ValueError(f"temperature must be in [0, {MAX_TEMPERATURE:g}], top_p in (0, 1] and top_k at least 1; got {temperature}, {top_p}, {top_k}")
    for name, value in (("max_new_tokens", max_new_tokens), ("max_batch_size", 1 if max_batch_size is None else max_batch_size), ("workers_per_device", workers_per_device),
                        ("timeout", timeout), ("max_body_bytes", max_body_bytes)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if max_queue is not None and max_queue < 0:
        raise ValueError(f"max_queue must be at least 0, got {max_queue}")
    if grace_period < 0:
        raise ValueError(f"grace_period must be at least 0, got {grace_period}")
    if generate_strategy is not None:
        raise NotImplementedError(f"generate_strategy={generate_strategy!r} is not supported; each device serves a whole copy of the model")
    if not (devices == "auto" or (isinstance(devices, int) and devices >= 1)):
        raise ValueError(f"devices must be a positive integer or 'auto', got {devices!r}")
    if not (api_path or "").startswith("/") or api_path in ("/health", "/info"):
        raise ValueError(f"api_path must start with '/' and not be /health or /info, got {api_path!r}")
    if api_key is not None and not api_key:
        raise ValueError("api_key must not be empty")
    if engine not in ("process", "thread"):
        raise ValueError(f"engine must be 'process' or 'thread', got {engine!r}")
    from litgpt.engine.devices import resolve_accelerator

    accelerator = resolve_accelerator(accelerator)
    if accelerator != "cuda" and devices not in (1, "auto"):
        raise ValueError(f"devices={devices} needs GPUs; on {accelerator} there is one device")
    if quantize is not None and accelerator != "cuda":
        raise ValueError(f"--quantize {quantize} needs a CUDA GPU (bitsandbytes); this would run on {accelerator}")

    from litgpt.api import LLM

    served_llm = LLM.load(str(checkpoint_dir), distribute=None, access_token=access_token)  # tokenizer and prompt style
    checkpoint_dir = served_llm.checkpoint_dir
    if not (checkpoint_dir / "lit_model.pth").is_file():
        raise FileNotFoundError(f"No lit_model.pth in {str(checkpoint_dir)!r}; convert a Hugging Face folder with `litgpt convert_to_litgpt`")

    from litgpt.serve_api import Settings

    count = (_cuda_count() if devices == "auto" else devices) if accelerator == "cuda" else 1
    if compile is None:
        compile = accelerator == "cuda" and quantize is None
    load = dict(precision=precision, quantize=quantize, compile=compile)
    workers: list = []
    try:
        for index in [i for i in range(count) for _ in range(workers_per_device)]:
            workers.append(_worker(served_llm, accelerator, index, max_batch_size, load, engine))
        _serve(workers, checkpoint_dir, accelerator, host, port, grace_period, timeout, max_queue, Settings(
            max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p), dict(
            api_path=api_path, stream=stream, openai_spec=openai_spec, api_key=api_key, max_body_bytes=max_body_bytes))
    finally:
        for worker in workers:
            worker.close()


def _serve(workers: list, checkpoint_dir: Path, accelerator: str, host: str, port: int, grace_period: float, timeout: int,
           max_queue: Optional[int], defaults: Any, options: dict) -> None:
    from litgpt.serve_api import Pool, Prompter, Served, build_app

    rows = sum(w.rows for w in workers)
    pool = Pool(workers, max_queue if max_queue is not None else max(64, 4 * rows), timeout)
    llm = workers[0].llm
    served = Served(
        pool=pool, prompter=Prompter(llm.tokenizer, llm.prompt_style, min(w.context for w in workers)), defaults=defaults,
        vocab_size=llm.config.padded_vocab_size, model_name=checkpoint_dir.name, **options,
    )
    print(f"Serving {checkpoint_dir.name} on http://{host}:{port}: {len(workers)} model cop{'ies' if len(workers) > 1 else 'y'} on {accelerator}, "
          f"max_batch_size {workers[0].rows}, context {served.prompter.context_length} tokens, queue {pool.max_queue}", flush=True)
    _run(build_app(served), host, port, grace_period)


def _worker(llm: Any, accelerator: str, index: int, max_batch_size: Optional[int], load: dict, engine: str) -> Any:
    """A model copy of `llm`'s checkpoint (`llm` without weights: its tokenizer and prompt style) on device `index`
    with its token loop: in a process of its own, where the weights load, with `engine="process"`."""
    from litgpt.serve_api import Worker

    if engine == "process":
        from litgpt.engine.remote import EngineProcess

        engine_process = EngineProcess(_engine, llm.checkpoint_dir, accelerator, index, max_batch_size, load, on_exit=_stop_serving)
        return Worker(llm, engine=engine_process)
    return Worker(*_load(llm.checkpoint_dir, accelerator, index, max_batch_size, load))


def _stop_serving(reason: str) -> None:
    """A token loop's process ended unasked (killed, out of memory): say so and stop the server as SIGTERM does (it
    then ends by that signal, non-zero), rather than answer every request with an error."""
    import os
    import signal

    print(f"litgpt serve: error: {reason}; stopping the server", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)


def _engine(checkpoint_dir: Path, accelerator: str, index: int, max_batch_size: Optional[int], load: dict) -> Tuple[Any, Any]:
    """In the token loop's process (`EngineProcess`): the batcher over a model copy, and the tokenizer's decode."""
    from litgpt.engine.batcher import Batcher

    llm, rows = _load(checkpoint_dir, accelerator, index, max_batch_size, load)
    return Batcher(llm.model, rows, step=llm.decode_step), llm.tokenizer.decode


def _load(checkpoint_dir: Path, accelerator: str, index: int, max_batch_size: Optional[int], load: dict) -> Tuple[Any, int]:
    """A model copy on device `index`, and its batch rows; those and the served context planned from the memory left."""
    from litgpt.api import LLM
    from litgpt.engine.core import ensure_kv_cache

    llm = LLM.load(str(checkpoint_dir), distribute=None)
    llm.distribute(accelerator=accelerator, devices=[index] if accelerator == "cuda" else 1, **load)
    rows, context = plan_rows(llm.model, max_batch_size)
    llm.model.max_seq_length = context
    if llm.model.lm_head.weight.device.type == "cuda":
        ensure_kv_cache(llm.model, rows, context)  # claimed now: the batcher never grows it, so never runs out mid-batch
    if load["compile"]:
        _warm_up(llm, rows)
    return llm, rows


def _warm_up(llm: Any, rows: int) -> None:
    """Compile and capture the decode steps now rather than in the first requests; if compiling fails (a model or
    a machine torch.compile cannot handle), serve with the uncompiled step, saying so in one line."""
    import time

    from litgpt.checkpoint import first_line
    from litgpt.engine.batcher import Batcher
    from litgpt.engine.core import fast_decode_step

    start = time.perf_counter()
    print(f"Compiling the decode step on {llm.model.lm_head.weight.device} (--compile false skips this)...", flush=True)
    try:
        Batcher(llm.model, rows, step=llm.decode_step).warm_up()
    except Exception as error:  # torch.compile's failures come in many classes
        print(f"Serving without compiling: torch.compile failed ({first_line(error)})", file=sys.stderr, flush=True)
        llm.decode_step = fast_decode_step(compile=False)
        return
    if not getattr(llm.decode_step, "compile", True):  # the step gave up compiling by itself (its warning says why)
        print("Serving without compiling: torch.compile failed for this model", file=sys.stderr, flush=True)
        return
    print(f"Compiled in {time.perf_counter() - start:.0f} s", flush=True)


def plan_rows(model: Any, max_batch_size: Optional[int]) -> Tuple[int, int]:
    """(batch rows, tokens per row) for `model`: on CUDA from the free memory, else `max_batch_size` or CPU_ROWS."""
    import torch

    from litgpt.serve_api import CPU_ROWS, MAX_ROWS, ROW_CONTEXT

    device, block = model.lm_head.weight.device, model.max_seq_length
    if device.type != "cuda":
        return max_batch_size or CPU_ROWS, block
    c = model.config
    dtype = model.lm_head.weight.dtype if model.lm_head.weight.is_floating_point() else torch.bfloat16
    per_token = 2 * c.n_layer * c.n_query_groups * c.head_size * dtype.itemsize  # keys and values, every layer
    free, _ = torch.cuda.mem_get_info(device)
    budget = int(0.9 * free) - 2 * 2**30  # room for activations, CUDA graphs and the allocator's slack
    rows = max_batch_size or max(1, min(MAX_ROWS, budget // (per_token * min(block, ROW_CONTEXT))))
    context = min(block, budget // (rows * per_token))
    context = context - context % 256 if context > 256 else context
    if context < 2:
        raise ValueError(f"{free / 2**30:.1f} GiB free on {device} hold no KV cache for {rows} rows: lower --max_batch_size")
    return rows, context


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


def _run(app: Any, host: str, port: int, grace_period: float) -> None:
    """Serve `app` until SIGTERM/SIGINT; then stop accepting, let requests finish for `grace_period` s, and return."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=grace_period, access_log=False, log_level="info",
                            lifespan="off")
    uvicorn.Server(config).run()

"""`litgpt serve`: an HTTP server (litserve) that generates with a checkpoint, batching concurrent requests.

    curl http://127.0.0.1:8000/predict -H 'Content-Type: application/json' -d '{"prompt": "What do llamas eat?"}'

The APIs themselves are in `serve_api.py`.
"""

from pathlib import Path
from typing import Literal, Optional, Union

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
    max_batch_size: int = 1,
    api_key: Optional[str] = None,
    workers_per_device: int = 1,
    compile: bool = False,
) -> None:
    """Serve a model over HTTP: POST /predict {"prompt": ...} answers {"output": ...}.

    A request may set its own "max_new_tokens", "temperature", "top_k" and "top_p". Requests that arrive while
    others are generating join the running batch at the next decode step (continuous batching).

    Args:
        checkpoint_dir: A checkpoint folder (lit_model.pth, model_config.yaml, tokenizer files), ORG/NAME under
            checkpoints/, or a model name from `litgpt download list` (downloaded when missing).
        quantize: bitsandbytes quantization of the weights (CUDA only): bnb.nf4, bnb.nf4-dq, bnb.fp4, bnb.fp4-dq, bnb.int8.
        precision: bf16-true, 16-true or 32-true; default bf16 on a GPU that has it, else 32-true.
        temperature: The default temperature: 0 is greedy, higher is more random.
        top_k: The default top-k: sample only among the k most likely tokens.
        top_p: The default top-p: sample only among the most likely tokens whose probabilities add up to top_p.
        max_new_tokens: The default number of tokens to generate at most.
        devices: How many devices to serve on ("auto": all); each holds a whole copy of the model.
        accelerator: "auto", "cpu", "cuda" (or "gpu") or "mps".
        port: The port to listen on (1024-65535).
        stream: Stream each reply as {"output": piece} lines.
        openai_spec: Serve OpenAI's chat completions API at /v1/chat/completions (streamed or not, as the client
            asks), laying out the messages with the model's chat template or prompt style.
        access_token: Hugging Face token for gated models, when downloading.
        api_path: The path of the generation endpoint (without --openai_spec).
        timeout: Seconds a request may wait in the queue before it is answered 504.
        generate_strategy: Splitting one model over several devices is not supported here.
        host: The address to listen on: 127.0.0.1 (this machine only), 0.0.0.0 or :: (every interface).
        max_batch_size: The most requests generated together by each model copy.
        api_key: Answer 401 to requests without the header `Authorization: Bearer <api_key>`.
        workers_per_device: Model copies per device, each with its own batch.
        compile: Compile the decode step with torch.compile (slower start, faster decoding). On GPUs the step
            replays CUDA graphs either way.
    """
    from litgpt.generate.sampling import check_sampling_args

    check_sampling_args(temperature, top_k, top_p)
    for name, value in (("max_new_tokens", max_new_tokens), ("max_batch_size", max_batch_size), ("workers_per_device", workers_per_device)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if generate_strategy is not None:
        raise NotImplementedError(f"generate_strategy={generate_strategy!r} is not supported; each device serves a whole copy of the model")
    if not (devices == "auto" or (isinstance(devices, int) and devices >= 1)):
        raise ValueError(f"devices must be a positive integer or 'auto', got {devices!r}")
    if not (api_path or "").startswith("/"):
        raise ValueError(f"api_path must start with '/', got {api_path!r}")
    if api_key is not None and not api_key:
        raise ValueError("api_key must not be empty")
    accelerator = _resolve_accelerator(accelerator)
    if accelerator != "cuda" and devices not in (1, "auto"):
        raise ValueError(f"devices={devices} needs GPUs; on {accelerator} there is one device")
    if quantize is not None and accelerator != "cuda":
        raise ValueError(f"--quantize {quantize} needs a CUDA GPU (bitsandbytes); this would run on {accelerator}")

    from litgpt.api import LLM

    checkpoint_dir = LLM.load(str(checkpoint_dir), distribute=None, access_token=access_token).checkpoint_dir
    if not (checkpoint_dir / "lit_model.pth").is_file():
        raise FileNotFoundError(f"No lit_model.pth in {str(checkpoint_dir)!r}; convert a Hugging Face folder with `litgpt convert_to_litgpt`")

    from litserve import LitServer

    from litgpt.serve_api import OpenAIChatAPI, PredictAPI, Settings, StreamPredictAPI

    defaults = Settings(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p)
    common = dict(
        checkpoint_dir=checkpoint_dir, quantize=quantize, precision=precision, defaults=defaults,
        max_batch_size=max_batch_size, api_key=api_key, compile=compile,
    )
    if openai_spec:
        from litserve.specs.openai import OpenAISpec

        api = OpenAIChatAPI(**common, spec=OpenAISpec())
    else:
        api = (StreamPredictAPI if stream else PredictAPI)(**common, api_path=api_path, stream=stream)
    server = LitServer(api, accelerator=accelerator, devices=devices, workers_per_device=workers_per_device, timeout=timeout)
    server.run(host=host, port=port, generate_client_file=False)


def _resolve_accelerator(accelerator: str) -> str:
    import torch

    accelerator = {"gpu": "cuda"}.get(accelerator, accelerator)
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if accelerator not in ("cpu", "cuda", "mps"):
        raise ValueError(f"accelerator must be auto, cpu, cuda, gpu or mps, got {accelerator!r}")
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise ValueError("accelerator='cuda' was asked for, but no CUDA GPU is available")
    return accelerator

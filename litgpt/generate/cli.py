"""`litgpt generate` (and `generate_full`, `generate_adapter`, `generate_adapter_v2`): complete a prompt with a
checkpoint, print the text, then a stats line.

Also what every generation command does alike: check the flags, encode the prompt, time and print the samples,
print the peak GPU memory.
"""

import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, List, Optional, Tuple

from litgpt.generate.flags import FLAGS, GENERATE, command

if TYPE_CHECKING:
    import torch

    from litgpt.api import LLM


@command(GENERATE)
def generate(args: SimpleNamespace) -> None:
    """Complete a prompt, wrapped in the model's prompt style, with the model in a checkpoint folder."""
    _generate(args, None)


# LitGPT's commands for finetuned models: an instruction's input, a weights file, longer replies
def _finetuned_flags(weights: str) -> Tuple[str, ...]:
    rest = GENERATE[GENERATE.index("num_samples") :]
    return ("checkpoint_dir", "prompt", "*", "input", "sys_prompt", weights, *rest)


def _weights_flag(what: str, default: str) -> tuple:
    return (
        Path, Path(default),
        f"The {what} weights file, loaded over the checkpoint folder's model. This default path is used only when "
        "it exists and the folder holds no finetuned weights of its own (the folder's are found by themselves).",
    )


LONGER = (int, 100, FLAGS["max_new_tokens"][2])
FULL_WEIGHTS = _weights_flag("finetuned model's (litgpt finetune_full)", "out/full/alpaca/lit_model_finetuned.pth")
ADAPTER_WEIGHTS = _weights_flag("adapter", "out/finetune/adapter/final/lit_model.pth.adapter")
ADAPTER_V2_WEIGHTS = _weights_flag("adapter v2", "out/finetune/adapter-v2/final/lit_model.pth.adapter_v2")


@command(_finetuned_flags("finetuned_path"), finetuned_path=FULL_WEIGHTS, max_new_tokens=LONGER)
def generate_full(args: SimpleNamespace) -> None:
    """Follow an instruction with a fully finetuned model: the checkpoint folder's, or that of --finetuned_path."""
    _generate(args, ("finetuned_path", args.finetuned_path, FULL_WEIGHTS[1]))


@command(_finetuned_flags("adapter_path"), adapter_path=ADAPTER_WEIGHTS, max_new_tokens=LONGER)
def generate_adapter(args: SimpleNamespace) -> None:
    """Follow an instruction with an adapter-finetuned model: the checkpoint folder's, or its base model with
    --adapter_path."""
    _generate(args, ("adapter_path", args.adapter_path, ADAPTER_WEIGHTS[1]))


@command(_finetuned_flags("adapter_path"), adapter_path=ADAPTER_V2_WEIGHTS, max_new_tokens=LONGER)
def generate_adapter_v2(args: SimpleNamespace) -> None:
    """Follow an instruction with an adapter-v2-finetuned model: the checkpoint folder's, or its base model with
    --adapter_path."""
    _generate(args, ("adapter_path", args.adapter_path, ADAPTER_V2_WEIGHTS[1]))


def _generate(args: SimpleNamespace, weights: Optional[Tuple[str, Path, Path]]) -> None:
    """Load the model (with `weights`: (flag, its value, its default), the weights file to use) and print completions."""
    from litgpt.api import LLM

    check_flags(args)
    # finetuned folders included; the decode step replays CUDA graphs on a GPU, compiled with --compile
    llm = LLM.load(str(args.checkpoint_dir), distribute=None)
    path = None if weights is None else weights_file(llm.checkpoint_dir, *weights)
    llm.distribute(devices=1, precision=args.precision, quantize=args.quantize, compile=args.compile, weights_file=path)
    print_completions(llm, args)
    print_memory([llm.device])


def weights_file(checkpoint_dir: Path, flag: str, path: Path, default: Path) -> Optional[Path]:
    """The weights file to load instead of what the folder holds, or None for the folder's own.

    A path given is used and must exist; the default path is used when it exists and the folder holds no
    finetuned (LoRA or adapter) weights, as LitGPT's commands load it.
    """
    from litgpt.finetuned import finetuned_kind

    path = Path(path)
    if path != default:
        if not path.is_file():
            raise FileNotFoundError(f"--{flag} {path}: no such file; give the path of the weights file to load")
        return path
    if not path.is_file() or finetuned_kind(checkpoint_dir) is not None:
        return None
    print(f"Loading the weights of {path} (--{flag}'s default)", file=sys.stderr)
    return path


def check_flags(args: SimpleNamespace) -> None:
    """Raise (one line) on sampling flags or a max_new_tokens that no generation accepts."""
    from litgpt.settings_check import check_generation

    check_generation(args.temperature, args.top_k, args.top_p, args.max_new_tokens)


def encode_prompt(llm: "LLM", args: SimpleNamespace, device: Optional["torch.device"] = None) -> "torch.Tensor":
    """`args.prompt` in the model's prompt style, as token ids; ValueError when it and max_new_tokens do not fit
    the model's context."""
    # only the commands for finetuned models take an instruction's input
    text = llm.prompt_style.apply(args.prompt, sys_prompt=args.sys_prompt, input=getattr(args, "input", ""))
    encoded = llm.tokenizer.encode(text, device=device)
    if encoded.numel() + args.max_new_tokens - 1 > llm.config.block_size:
        raise ValueError(
            f"The prompt ({encoded.numel()} tokens) plus max_new_tokens ({args.max_new_tokens}) do not fit the model's "
            f"context of {llm.config.block_size} tokens"
        )
    return encoded


def print_completions(llm: "LLM", args: SimpleNamespace, show: bool = True) -> None:
    """Print `args.num_samples` completions of `args.prompt` by `llm`'s model (on one device or spread over
    several), each followed by a stats line on stderr; with `show=False`, generate the same without printing
    (other ranks). Decodes with `llm.decode_step`."""
    from litgpt.engine.core import ensure_kv_cache
    from litgpt.engine.batcher import generate_tokens

    model, tokenizer = llm.model, llm.tokenizer
    encoded = encode_prompt(llm, args, llm.device)
    ensure_kv_cache(model, 1, encoded.numel() + args.max_new_tokens - 1)
    stop = llm.prompt_style.stop_tokens(tokenizer)

    def draw() -> Iterator[int]:
        return generate_tokens(
            model, encoded, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
            stop_tokens=stop, step=llm.decode_step,
        )

    for i, (tokens, seconds) in enumerate(timed_samples(args, draw)):
        if show:
            print_sample(tokenizer.decode(encoded.tolist() + tokens), i, len(tokens), seconds)


def timed_samples(args: SimpleNamespace, draw: Callable[[], Iterable[int]]) -> Iterator[Tuple[List[int], float]]:
    """Seed with `args.seed`, then `args.num_samples` times: the tokens `draw()` yields and the seconds they took."""
    import torch

    torch.manual_seed(args.seed)
    for _ in range(args.num_samples):
        start = time.perf_counter()
        tokens = list(draw())
        yield tokens, time.perf_counter() - start


def print_sample(text: str, i: int, n_tokens: int, seconds: float, note: str = "") -> None:
    """The text on stdout; the time and speed of sample `i` (from 0) on stderr."""
    print(text, flush=True)
    print(
        f"Time for inference {i + 1}: {seconds:.02f} sec total, {n_tokens / seconds:.02f} tokens/sec, "
        f"{n_tokens} tokens{note}",
        file=sys.stderr,
    )


def print_memory(devices: List["torch.device"], note: str = "", start: str = "") -> None:
    """The peak memory allocated on each CUDA device of `devices`, on stderr; nothing without a GPU."""
    import torch

    used = [d for d in dict.fromkeys(devices) if d.type == "cuda"]
    if not used:
        return
    where = (lambda d: f" on {d}") if len(used) > 1 else (lambda d: "")
    memory = ", ".join(f"{torch.cuda.max_memory_allocated(d) / 1e9:.02f} GB{where(d)}" for d in used)
    print(f"{start}Memory used: {memory}{note}", file=sys.stderr)

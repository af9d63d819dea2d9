"""`litgpt generate` (and `generate_full`, `generate_adapter`, `generate_adapter_v2`): complete a prompt with a
checkpoint, print the text, then a stats line.

Also what every generation command does alike: check the flags, encode the prompt, time and print the samples,
print the peak GPU memory.
"""

import sys
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, List, Optional, Tuple

from litgpt.generate.flags import GENERATE, command

if TYPE_CHECKING:
    import torch

    from litgpt.api import LLM


@command(GENERATE)
def generate(args: SimpleNamespace) -> None:
    """Complete a prompt, wrapped in the model's prompt style, with the model in a checkpoint folder."""
    from litgpt.api import LLM

    check_flags(args)
    # finetuned folders included; the decode step replays CUDA graphs on a GPU, compiled with --compile
    llm = LLM.load(str(args.checkpoint_dir), precision=args.precision, quantize=args.quantize, compile=args.compile)
    print_completions(llm, args)
    print_memory([llm.device])


generate_full = generate
generate_adapter = generate
generate_adapter_v2 = generate


def check_flags(args: SimpleNamespace) -> None:
    """Raise (one line) on sampling flags or a max_new_tokens that no generation accepts."""
    from litgpt.settings_check import check_generation

    check_generation(args.temperature, args.top_k, args.top_p, args.max_new_tokens)


def encode_prompt(llm: "LLM", args: SimpleNamespace, device: Optional["torch.device"] = None) -> "torch.Tensor":
    """`args.prompt` in the model's prompt style, as token ids; ValueError when it and max_new_tokens do not fit
    the model's context."""
    encoded = llm.tokenizer.encode(llm.prompt_style.apply(args.prompt, sys_prompt=args.sys_prompt), device=device)
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

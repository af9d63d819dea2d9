"""`litgpt generate` (and `generate_full`): complete a prompt with a checkpoint, print the text, then a stats line."""

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from litgpt.quantize import Quantize

if TYPE_CHECKING:
    from litgpt.api import LLM


def generate(
    checkpoint_dir: Path,
    prompt: str = "What food do llamas eat?",
    *,
    sys_prompt: Optional[str] = None,
    num_samples: int = 1,
    max_new_tokens: int = 50,
    top_k: Optional[int] = 50,
    top_p: float = 1.0,
    temperature: float = 0.8,
    quantize: Quantize = None,
    precision: Optional[str] = None,
    compile: bool = False,
    seed: int = 1234,
) -> None:
    """Complete a prompt, wrapped in the model's prompt style, with the model in a checkpoint folder.

    Args:
        checkpoint_dir: A checkpoint folder (lit_model.pth, model_config.yaml, tokenizer files), or ORG/NAME
            under checkpoints/.
        prompt: The text to complete.
        sys_prompt: The system prompt, for prompt styles that have one.
        num_samples: How many completions to draw.
        max_new_tokens: The most tokens to generate per completion.
        top_k: Sample only among the k most likely tokens (1 is greedy).
        top_p: Sample only among the most likely tokens whose probabilities add up to top_p.
        temperature: Scales the logits: 0 is greedy, higher is more random.
        quantize: bitsandbytes quantization of the weights (CUDA only): bnb.nf4, bnb.nf4-dq, bnb.fp4, bnb.fp4-dq, bnb.int8.
        precision: bf16-true, 16-true or 32-true; default bf16 on a GPU that has it, else 32-true.
        compile: Compile the decoding step with torch.compile (slower start, faster decoding).
        seed: The random seed.
    """
    import torch

    from litgpt.api import LLM

    from litgpt.settings_check import check_generation

    check_generation(temperature, top_k, top_p, max_new_tokens)
    # finetuned folders included; the decode step replays CUDA graphs on a GPU, compiled with --compile
    llm = LLM.load(str(checkpoint_dir), precision=precision, quantize=quantize, compile=compile)
    print_completions(
        llm, prompt, sys_prompt=sys_prompt, num_samples=num_samples, max_new_tokens=max_new_tokens, top_k=top_k,
        top_p=top_p, temperature=temperature, seed=seed,
    )
    if llm.device.type == "cuda":
        print(f"Memory used: {torch.cuda.max_memory_allocated() / 1e9:.02f} GB", file=sys.stderr)


def print_completions(
    llm: "LLM",
    prompt: str,
    *,
    sys_prompt: Optional[str] = None,
    num_samples: int = 1,
    max_new_tokens: int = 50,
    top_k: Optional[int] = 50,
    top_p: float = 1.0,
    temperature: float = 0.8,
    seed: int = 1234,
    show: bool = True,
) -> None:
    """Print `num_samples` completions of `prompt` by `llm`'s model (on one device or spread over several), each
    followed by a stats line on stderr; with `show=False`, generate the same without printing (other ranks).
    Decodes with `llm.decode_step`."""
    import torch

    from litgpt.engine.core import ensure_kv_cache, generate_tokens

    model, tokenizer = llm.model, llm.tokenizer
    encoded = tokenizer.encode(llm.prompt_style.apply(prompt, sys_prompt=sys_prompt), device=llm.device)
    ensure_kv_cache(model, 1, encoded.numel() + max_new_tokens - 1)
    stop = llm.prompt_style.stop_tokens(tokenizer)
    torch.manual_seed(seed)
    for i in range(num_samples):
        start = time.perf_counter()
        tokens = list(generate_tokens(
            model, encoded, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
            stop_tokens=stop, step=llm.decode_step,
        ))
        seconds = time.perf_counter() - start
        if not show:
            continue
        print(tokenizer.decode(encoded.tolist() + tokens), flush=True)
        print(
            f"Time for inference {i + 1}: {seconds:.02f} sec total, {len(tokens) / seconds:.02f} tokens/sec, "
            f"{len(tokens)} tokens",
            file=sys.stderr,
        )


generate_full = generate
generate_adapter = generate
generate_adapter_v2 = generate

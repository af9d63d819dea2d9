"""`litgpt generate_sequentially`: generate with a model too large for one GPU, its blocks spread over several
(`litgpt.engine.sequential`)."""

import sys
from pathlib import Path
from typing import Optional

from litgpt.engine.devices import Accelerator, Devices
from litgpt.engine.sequential import load_sequentially
from litgpt.quantize import Quantize


def generate_sequentially(
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
    accelerator: Accelerator = "auto",
    devices: Devices = "auto",
) -> None:
    """Complete a prompt with a model too large for one GPU: consecutive blocks go to consecutive GPUs.

    The GPUs take turns (one works while the others wait), so this is for models that do not fit one GPU;
    `litgpt generate_tp` makes them work at once.

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
        accelerator: cuda, cpu, or auto (cuda when there is a GPU). On the CPU the pieces all run on the CPU,
            which checks a setup without GPUs.
        devices: How many devices to spread the blocks over (at most the number of layers); auto is every visible GPU.
    """
    import torch

    from litgpt.api import LLM
    from litgpt.generate.cli import print_completions
    from litgpt.engine.core import fast_decode_step
    from litgpt.engine.devices import pick_devices

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    chosen = pick_devices(accelerator, devices)
    llm = LLM.load(str(checkpoint_dir), distribute=None)  # the tokenizer and prompt style; the model comes next
    llm.model = load_sequentially(llm.checkpoint_dir, chosen, precision=precision, quantize=quantize)
    llm.quantize = quantize
    llm.decode_step = fast_decode_step(compile)  # the plain (or compiled) step for a model over several devices
    print_completions(
        llm, prompt, sys_prompt=sys_prompt, num_samples=num_samples, max_new_tokens=max_new_tokens, top_k=top_k,
        top_p=top_p, temperature=temperature, seed=seed,
    )
    used = [d for d in dict.fromkeys(chosen) if d.type == "cuda"]
    if used:
        memory = ", ".join(f"{torch.cuda.max_memory_allocated(d) / 1e9:.02f} GB on {d}" for d in used)
        print(f"Memory used: {memory}", file=sys.stderr)

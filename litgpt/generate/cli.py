"""`litgpt generate`: complete a prompt with a checkpoint and print the text, then a stats line."""

import sys
import time
from pathlib import Path
from typing import Optional


def generate(
    checkpoint_dir: Path,
    prompt: str = "What food do llamas eat?",
    *,
    num_samples: int = 1,
    max_new_tokens: int = 50,
    top_k: Optional[int] = 50,
    top_p: float = 1.0,
    temperature: float = 0.8,
    precision: Optional[str] = None,
    seed: int = 1234,
) -> None:
    """Complete a prompt with the model in a checkpoint folder.

    Args:
        checkpoint_dir: A checkpoint folder (lit_model.pth, model_config.yaml, tokenizer files), or ORG/NAME
            under checkpoints/.
        prompt: The text to complete.
        num_samples: How many completions to draw.
        max_new_tokens: The most tokens to generate per completion.
        top_k: Sample only among the k most likely tokens (1 is greedy).
        top_p: Sample only among the most likely tokens whose probabilities add up to top_p.
        temperature: Scales the logits: 0 is greedy, higher is more random.
        precision: bf16-true, 16-true or 32-true; default bf16 on a GPU that has it, else 32-true.
        seed: The random seed.
    """
    import torch

    from litgpt.checkpoint import load_model, resolve_checkpoint_dir
    from litgpt.generate.core import generate_tokens
    from litgpt.tokenizer import Tokenizer

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    checkpoint_dir = resolve_checkpoint_dir(checkpoint_dir)
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = Tokenizer(checkpoint_dir)
    model = load_model(checkpoint_dir, device=device, precision=precision)
    encoded = tokenizer.encode(prompt, device=device)
    model.set_kv_cache(batch_size=1, max_seq_length=min(model.config.block_size, encoded.numel() + max_new_tokens))
    model.max_seq_length = min(model.config.block_size, encoded.numel() + max_new_tokens)
    stop = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
    for _ in range(num_samples):
        start = time.perf_counter()
        tokens = list(
            generate_tokens(model, encoded, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, stop_tokens=stop)
        )
        elapsed = time.perf_counter() - start
        print(tokenizer.decode(torch.cat((encoded.cpu(), torch.tensor(tokens, dtype=torch.long)))), flush=True)
        memory = f", peak memory {torch.cuda.max_memory_allocated() / 1e9:.02f} GB" if device.type == "cuda" else ""
        print(
            f"Time for inference: {elapsed:.02f} sec total, {len(tokens) / elapsed:.02f} tokens/sec, {len(tokens)} tokens{memory}",
            file=sys.stderr,
        )

"""`litgpt generate_speculatively`: a draft model proposes, the target model verifies (`litgpt.engine.speculative`)."""

import sys
import time
from pathlib import Path
from typing import Optional

from litgpt.engine.speculative import Acceptance, speculative_tokens
from litgpt.quantize import Quantize


def generate_speculatively(
    draft_model_checkpoint_dir: Path,
    target_model_checkpoint_dir: Path,
    prompt: str = "What food do llamas eat?",
    *,
    sys_prompt: Optional[str] = None,
    num_samples: int = 1,
    max_new_tokens: int = 50,
    speculative_k: int = 3,
    top_k: Optional[int] = 50,
    top_p: float = 1.0,
    temperature: float = 0.8,
    quantize: Quantize = None,
    precision: Optional[str] = None,
    compile: bool = False,
    seed: int = 1234,
) -> None:
    """Generate with a large target model, sped up by a small draft model that shares its tokenizer.

    Args:
        draft_model_checkpoint_dir: The small, fast model's checkpoint folder.
        target_model_checkpoint_dir: The large model's checkpoint folder; its prompt style and tokenizer are used.
        prompt: The text to complete.
        sys_prompt: The system prompt, for prompt styles that have one.
        num_samples: How many completions to draw.
        max_new_tokens: The most tokens to generate per completion.
        speculative_k: How many tokens the draft model proposes per round.
        top_k: Sample only among the k most likely tokens (1 is greedy).
        top_p: Sample only among the most likely tokens whose probabilities add up to top_p.
        temperature: Scales the logits: 0 is greedy, higher is more random.
        quantize: bitsandbytes quantization of both models (CUDA only): bnb.nf4, bnb.nf4-dq, bnb.fp4, bnb.fp4-dq, bnb.int8.
        precision: bf16-true, 16-true or 32-true; default bf16 on a GPU that has it, else 32-true.
        compile: Compile both models' forward pass with torch.compile.
        seed: The random seed.
    """
    import torch

    from litgpt.api import LLM
    from litgpt.engine.core import ensure_kv_cache

    target = LLM.load(str(target_model_checkpoint_dir), precision=precision, quantize=quantize)
    draft = LLM.load(str(draft_model_checkpoint_dir), precision=precision, quantize=quantize)
    if draft.tokenizer.vocab_size != target.tokenizer.vocab_size:
        raise ValueError(
            f"The draft and target models need the same tokenizer; their vocabularies have {draft.tokenizer.vocab_size} "
            f"and {target.tokenizer.vocab_size} tokens"
        )
    tokenizer = target.tokenizer
    encoded = tokenizer.encode(target.prompt_style.apply(prompt, sys_prompt=sys_prompt), device=target.device)
    for llm in (target, draft):
        ensure_kv_cache(llm.model, 1, encoded.numel() + max_new_tokens - 1)
    target_model, draft_model = target.model, draft.model
    if compile:
        target_model, draft_model = torch.compile(target_model, dynamic=True), torch.compile(draft_model, dynamic=True)
    stop = target.prompt_style.stop_tokens(tokenizer)
    torch.manual_seed(seed)
    for i in range(num_samples):
        acceptance = Acceptance()
        start = time.perf_counter()
        tokens = list(speculative_tokens(
            target_model, draft_model, encoded, max_new_tokens, speculative_k=speculative_k,
            temperature=temperature, top_k=top_k, top_p=top_p, stop_tokens=stop, acceptance=acceptance,
        ))
        seconds = time.perf_counter() - start
        print(tokenizer.decode(encoded.tolist() + tokens), flush=True)
        print(
            f"Time for inference {i + 1}: {seconds:.02f} sec total, {len(tokens) / seconds:.02f} tokens/sec, "
            f"{len(tokens)} tokens, acceptance rate {acceptance.rate * 100:.2f}% "
            f"({acceptance.accepted}/{acceptance.proposed} draft tokens)",
            file=sys.stderr,
        )
    if target.device.type == "cuda":
        print(f"Memory used: {torch.cuda.max_memory_allocated() / 1e9:.02f} GB", file=sys.stderr)

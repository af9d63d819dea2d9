"""`litgpt generate_speculatively`: a draft model proposes, the target model verifies (`litgpt.engine.speculative`)."""

from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

from litgpt.engine.speculative import Acceptance, speculative_tokens
from litgpt.generate.flags import REQUIRED, command


@command(
    (
        "draft_model_checkpoint_dir", "target_model_checkpoint_dir", "prompt", "*", "sys_prompt", "num_samples",
        "max_new_tokens", "speculative_k", "top_k", "top_p", "temperature", "quantize", "precision", "compile", "seed",
    ),
    draft_model_checkpoint_dir=(Path, REQUIRED, "The small, fast model's checkpoint folder."),
    target_model_checkpoint_dir=(
        Path, REQUIRED, "The large model's checkpoint folder; its prompt style and tokenizer are used."
    ),
    speculative_k=(int, 3, "How many tokens the draft model proposes per round."),
    quantize="bitsandbytes quantization of both models (CUDA only): bnb.nf4, bnb.nf4-dq, bnb.fp4, bnb.fp4-dq, bnb.int8.",
    compile="Compile both models' forward pass with torch.compile.",
)
def generate_speculatively(args: SimpleNamespace) -> None:
    """Generate with a large target model, sped up by a small draft model that shares its tokenizer."""
    import torch

    from litgpt.api import LLM
    from litgpt.engine.core import ensure_kv_cache
    from litgpt.generate.cli import check_flags, encode_prompt, print_memory, print_sample, timed_samples

    check_flags(args)
    target = LLM.load(str(args.target_model_checkpoint_dir), precision=args.precision, quantize=args.quantize)
    draft = LLM.load(str(args.draft_model_checkpoint_dir), precision=args.precision, quantize=args.quantize)
    if draft.tokenizer.vocab_size != target.tokenizer.vocab_size:
        raise ValueError(
            f"The draft and target models need the same tokenizer; their vocabularies have {draft.tokenizer.vocab_size} "
            f"and {target.tokenizer.vocab_size} tokens"
        )
    tokenizer = target.tokenizer
    encoded = encode_prompt(target, args, target.device)
    for llm in (target, draft):
        ensure_kv_cache(llm.model, 1, encoded.numel() + args.max_new_tokens - 1)
    target_model, draft_model = target.model, draft.model
    if args.compile:
        target_model, draft_model = torch.compile(target_model, dynamic=True), torch.compile(draft_model, dynamic=True)
    stop = target.prompt_style.stop_tokens(tokenizer)
    acceptances = []

    def draw() -> Iterator[int]:
        acceptances.append(Acceptance())
        return speculative_tokens(
            target_model, draft_model, encoded, args.max_new_tokens, speculative_k=args.speculative_k,
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, stop_tokens=stop, acceptance=acceptances[-1],
        )

    for i, (tokens, seconds) in enumerate(timed_samples(args, draw)):
        rate = acceptances[-1]
        note = f", acceptance rate {rate.rate * 100:.2f}% ({rate.accepted}/{rate.proposed} draft tokens)"
        print_sample(tokenizer.decode(encoded.tolist() + tokens), i, len(tokens), seconds, note)
    print_memory([target.device])

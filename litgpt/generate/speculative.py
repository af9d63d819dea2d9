"""Speculative decoding: a small draft model proposes k tokens, the target model checks them in one forward pass.

Each round:

    draft:  last ─► d1 ─► d2 ─► … ─► dk            (k one-token steps, distributions q1..qk)
    target: [last, d1, …, dk] in one pass          (distributions p1..p(k+1))
    accept d_i with probability min(1, p_i(d_i) / q_i(d_i)); at the first rejection draw from
    normalise(max(0, p_i - q_i)) and end the round; if all k pass, draw one more token from p(k+1).

The tokens come out distributed exactly as the target's own samples (Leviathan et al., 2023); greedy
decoding (temperature 0 or top_k 1) gives exactly the target's greedy text. Both KV caches are addressed by
position, so rejected drafts need no rollback: later tokens overwrite their slots, the causal mask hides them.
"""

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Literal, Optional

if TYPE_CHECKING:
    import torch

    from litgpt.model import GPT

Quantize = Optional[Literal["bnb.nf4", "bnb.nf4-dq", "bnb.fp4", "bnb.fp4-dq", "bnb.int8"]]


@dataclass
class Acceptance:
    """How many draft tokens were proposed and how many the target accepted."""

    proposed: int = 0
    accepted: int = 0

    @property
    def rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


def speculative_tokens(
    target: "GPT",
    draft: "GPT",
    prompt: "torch.Tensor",
    max_new_tokens: int,
    *,
    speculative_k: int = 3,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: float = 1.0,
    stop_tokens=(),
    include_stop: bool = False,
    generator: Optional["torch.Generator"] = None,
    acceptance: Optional[Acceptance] = None,
) -> Iterator[int]:
    """Yield new token ids for a 1-D `prompt`, as `generate_tokens` does for `target` alone.

    Both models need KV caches of `len(prompt) + max_new_tokens - 1` positions (`ensure_kv_cache`).

    Args:
        speculative_k: draft tokens per round.
        acceptance: counts proposed and accepted draft tokens, if given.
    """
    import torch

    from litgpt.generate.core import StopWatcher, kv_cache_shape
    from litgpt.generate.sampling import check_sampling_args, is_greedy, probabilities

    check_sampling_args(temperature, top_k, top_p)
    if speculative_k < 1:
        raise ValueError(f"speculative_k must be at least 1, got {speculative_k}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    needed = prompt.numel() + max_new_tokens - 1
    for name, model in (("target", target), ("draft", draft)):
        shape = kv_cache_shape(model)
        if shape is None or shape[1] < needed:
            raise ValueError(f"The {name} model needs a KV cache of {needed} positions (see ensure_kv_cache)")
    acceptance = acceptance if acceptance is not None else Acceptance()
    greedy = is_greedy(temperature, top_k)
    device = prompt.device
    watcher = StopWatcher(stop_tokens, include_stop)
    tokens: List[int] = prompt.tolist()
    target_valid = draft_valid = 0  # how many leading tokens each KV cache holds correctly
    generated = 0

    def forward(model, new: List[int], start: int) -> "torch.Tensor":
        """Logits (len(new), V) of `new` fed at positions start, start + 1, ..."""
        ids = torch.tensor([new], dtype=torch.long, device=device)
        positions = torch.arange(start, start + len(new), device=device).view(1, -1)
        return model(ids, positions, input_pos_maxp1=start + len(new))[0]

    def dist(logits: "torch.Tensor") -> "torch.Tensor":
        return probabilities(logits, temperature, top_k, top_p)

    def draw(probs: "torch.Tensor") -> int:
        return int(probs.argmax()) if greedy else int(torch.multinomial(probs, 1, generator=generator))

    with torch.inference_mode():
        while generated < max_new_tokens:
            n = len(tokens)
            k = min(speculative_k, max_new_tokens - generated - 1)
            drafts: List[int] = []
            draft_probs = []
            if k > 0:
                logits = forward(draft, tokens[draft_valid:], draft_valid)[-1]
                for i in range(k):
                    probs = dist(logits.unsqueeze(0))[0]
                    drafts.append(draw(probs))
                    draft_probs.append(probs)
                    if i < k - 1:
                        logits = forward(draft, drafts[-1:], n + i)[-1]
                draft_valid = n + k - 1
            target_probs = dist(forward(target, tokens[target_valid:] + drafts, target_valid)[-(k + 1) :])  # (k+1, V)
            accepted = 0
            for i, token in enumerate(drafts):
                p, q = target_probs[i, token], draft_probs[i][token]
                if greedy:
                    keep = int(target_probs[i].argmax()) == token
                else:
                    keep = float(torch.rand((), generator=generator, device=p.device)) < min(1.0, float(p / q))
                if not keep:
                    break
                accepted += 1
            if accepted < k:  # draw the replacement from what the target wants beyond the draft
                residual = (target_probs[accepted] - draft_probs[accepted]).clamp(min=0)
                extra = draw(target_probs[accepted] if greedy or residual.sum() <= 0 else residual / residual.sum())
            else:
                extra = draw(target_probs[k])
            acceptance.proposed += k
            acceptance.accepted += accepted
            new = drafts[:accepted] + [extra]
            target_valid = n + accepted
            draft_valid = min(draft_valid, n + accepted)
            tokens.extend(new)
            generated += len(new)
            for token in new:
                released = watcher.push(token)
                yield from released
                if watcher.stopped:
                    return
        yield from watcher.flush()


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
    from litgpt.generate.core import ensure_kv_cache

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

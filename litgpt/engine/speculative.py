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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Tuple

if TYPE_CHECKING:
    import torch

    from litgpt.model import GPT

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

    from litgpt.engine.core import StopWatcher, kv_cache_shape
    from litgpt.engine.sampling import check_sampling_args, is_greedy, probabilities

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
            accepted, extra = _verify(drafts, draft_probs, target_probs, greedy, draw, generator)
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


def _verify(drafts: List[int], draft_probs: list, target_probs: "torch.Tensor", greedy: bool, draw: Any, generator: Any) -> Tuple[int, int]:
    """(how many drafts the target accepts, the token that follows them): each draft kept with probability
    min(1, p/q), the first rejected one replaced by a draw from max(0, p - q); all kept: one more from p."""
    import torch

    accepted, k = 0, len(drafts)
    for i, token in enumerate(drafts):
        p, q = target_probs[i, token], draft_probs[i][token]
        if greedy:
            keep = int(target_probs[i].argmax()) == token
        else:
            keep = float(torch.rand((), generator=generator, device=p.device)) < min(1.0, float(p / q))
        if not keep:
            break
        accepted += 1
    if accepted == k:
        return accepted, draw(target_probs[k])
    # draw the replacement from what the target wants beyond the draft
    residual = (target_probs[accepted] - draft_probs[accepted]).clamp(min=0)
    return accepted, draw(target_probs[accepted] if greedy or residual.sum() <= 0 else residual / residual.sum())

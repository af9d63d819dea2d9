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
    """Yield new token ids for a 1-D `prompt`, as `generate_tokens` does for `target` alone: the token loop
    (`Batcher`) with a `Speculation` policy drafting and verifying in place of its decode step.

    Both models need KV caches of `len(prompt) + max_new_tokens - 1` positions (`ensure_kv_cache`).

    Args:
        speculative_k: draft tokens per round.
        acceptance: counts proposed and accepted draft tokens, if given.
    """
    from litgpt.engine.batcher import Batcher, Generation
    from litgpt.engine.core import decode_step, kv_cache_shape
    from litgpt.engine.sampling import check_sampling_args

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
    gen = Generation(prompt, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, stop_tokens=stop_tokens,
                     generator=generator, include_stop=include_stop)
    batcher = Batcher(target, 1, step=decode_step, cache_multiple=1, draft=Speculation(draft, speculative_k, acceptance))
    batcher.add(gen)
    taken = 0
    while batcher.busy:
        batcher.step()
        yield from gen.tokens[taken:]
        taken = len(gen.tokens)


class Speculation:
    """The token loop's draft/verify policy: each round the draft model proposes up to `k` tokens after the row's
    tokens so far, the target checks them in one forward pass, and the accepted ones plus one more come out.

    Both KV caches are addressed by position: rejected drafts need no rollback (later tokens overwrite their
    slots, the causal mask hides them); `target_valid` / `draft_valid` count the leading tokens each cache holds.
    """

    def __init__(self, draft: "GPT", k: int, acceptance: Optional[Acceptance] = None) -> None:
        self.draft = draft
        self.k = k
        self.acceptance = acceptance if acceptance is not None else Acceptance()
        self.tokens: List[int] = []  # the row's prompt and every token generated so far
        self.target_valid = self.draft_valid = 0

    def admit(self, gen: Any) -> None:
        """A new row, its prompt just prefilled into the target's cache."""
        from litgpt.engine.core import ensure_kv_cache

        self.tokens = gen.prompt.tolist()
        self.target_valid, self.draft_valid = len(self.tokens), 0
        ensure_kv_cache(self.draft, 1, len(self.tokens) + gen.max_new_tokens - 1)

    def accept(self, gen: Any, token: int) -> None:
        """The loop took `token` as the row's next one."""
        self.tokens.append(token)

    def round(self, target: "GPT", gen: Any) -> List[int]:
        """One draft/verify round for `gen`: its next tokens (the accepted drafts and one more)."""
        import torch

        from litgpt.engine.sampling import is_greedy, probabilities

        greedy = is_greedy(gen.temperature, gen.top_k)
        device = gen.prompt.device
        tokens, n = self.tokens, len(self.tokens)
        k = min(self.k, gen.max_new_tokens - gen._generated - 1)

        def forward(model: "GPT", new: List[int], start: int) -> "torch.Tensor":
            """Logits (len(new), V) of `new` fed at positions start, start + 1, ..."""
            ids = torch.tensor([new], dtype=torch.long, device=device)
            positions = torch.arange(start, start + len(new), device=device).view(1, -1)
            return model(ids, positions, input_pos_maxp1=start + len(new))[0]

        def dist(logits: "torch.Tensor") -> "torch.Tensor":
            return probabilities(logits, gen.temperature, gen.top_k, gen.top_p)

        def draw(probs: "torch.Tensor") -> int:
            return int(probs.argmax()) if greedy else int(torch.multinomial(probs, 1, generator=gen.generator))

        drafts: List[int] = []
        draft_probs = []
        if k > 0:
            logits = forward(self.draft, tokens[self.draft_valid :], self.draft_valid)[-1]
            for i in range(k):
                probs = dist(logits.unsqueeze(0))[0]
                drafts.append(draw(probs))
                draft_probs.append(probs)
                if i < k - 1:
                    logits = forward(self.draft, drafts[-1:], n + i)[-1]
            self.draft_valid = n + k - 1
        target_probs = dist(forward(target, tokens[self.target_valid :] + drafts, self.target_valid)[-(k + 1) :])  # (k+1, V)
        accepted, extra = _verify(drafts, draft_probs, target_probs, greedy, draw, gen.generator)
        self.acceptance.proposed += k
        self.acceptance.accepted += accepted
        self.target_valid = n + accepted
        self.draft_valid = min(self.draft_valid, n + accepted)
        return drafts[:accepted] + [extra]


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

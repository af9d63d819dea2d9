from types import SimpleNamespace

import pytest
import torch

from litgpt.checkpoint import load_model
from litgpt.engine.core import ensure_kv_cache
from litgpt.engine.batcher import generate_tokens
from litgpt.engine.speculative import Acceptance, speculative_tokens
from litgpt.generate.speculative import generate_speculatively

PROMPT = [0, 5, 17, 42, 99, 7, 3]


def run(target, draft, n, k, **kwargs):
    for model in (target, draft):
        ensure_kv_cache(model, 1, len(PROMPT) + n)
    acceptance = Acceptance()
    tokens = list(speculative_tokens(target, draft, torch.tensor(PROMPT), n, speculative_k=k, acceptance=acceptance, **kwargs))
    return tokens, acceptance


@pytest.mark.parametrize("k", [1, 3, 5])
def test_greedy_equals_the_targets_greedy(llama_dir, draft_llama_dir, k):
    target, draft = load_model(llama_dir), load_model(draft_llama_dir)
    ensure_kv_cache(target, 1, len(PROMPT) + 25)
    expected = list(generate_tokens(target, torch.tensor(PROMPT), 25, temperature=0.0))
    tokens, acceptance = run(target, draft, 25, k, temperature=0.0)
    assert tokens == expected
    assert acceptance.proposed > 0 and 0.0 <= acceptance.rate < 1.0
    # a draft identical to the target is always right
    tokens, acceptance = run(target, load_model(llama_dir), 25, k, temperature=0.0)
    assert tokens == expected and acceptance.rate == 1.0


def test_greedy_stops_like_the_target(llama_dir, draft_llama_dir):
    target, draft = load_model(llama_dir), load_model(draft_llama_dir)
    ensure_kv_cache(target, 1, 40)
    full = list(generate_tokens(target, torch.tensor(PROMPT), 20, temperature=0.0))
    stop = full[6]
    tokens, _ = run(target, draft, 20, 4, temperature=0.0, stop_tokens=[stop])
    assert tokens == full[: full.index(stop)]


def test_sampling_accepts_a_perfect_draft_and_is_reproducible(llama_dir, draft_llama_dir):
    target = load_model(llama_dir)
    tokens, acceptance = run(target, load_model(llama_dir), 20, 3, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert len(tokens) == 20 and acceptance.rate == 1.0
    draft = load_model(draft_llama_dir)
    runs = [run(target, draft, 20, 3, temperature=0.8, top_k=20, generator=torch.Generator().manual_seed(1))[0] for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 20


class FixedDistribution(torch.nn.Module):
    """A stand-in model whose next-token distribution is `probs` whatever the context."""

    max_seq_length = 64

    def __init__(self, probs):
        super().__init__()
        self.logits = torch.tensor(probs).log()
        cache = SimpleNamespace(k=torch.zeros(1, 1, self.max_seq_length, 1))
        self.transformer = SimpleNamespace(h=[SimpleNamespace(attn=SimpleNamespace(kv_cache=cache))])
        self.lm_head = SimpleNamespace(weight=self.logits)  # where the token loop looks for the model's device

    def forward(self, ids, positions, input_pos_maxp1=None, logits_at=None):
        if logits_at is not None:  # a prefill: the logits after each row's last token
            return self.logits.expand(ids.size(0), -1)
        return self.logits.expand(ids.size(0), ids.size(1), -1)


@pytest.mark.parametrize("k", [1, 3])
def test_sampled_tokens_follow_the_targets_distribution(k):
    """Accept/reject turns the draft's proposals into samples of the target's distribution."""
    p, q = [0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]
    target, draft = FixedDistribution(p), FixedDistribution(q)
    generator = torch.Generator().manual_seed(0)
    counts, acceptance = torch.zeros(4), Acceptance()
    for _ in range(1000):
        tokens = speculative_tokens(
            target, draft, torch.tensor([0]), 4, speculative_k=k, temperature=1.0, generator=generator, acceptance=acceptance
        )
        for token in tokens:
            counts[token] += 1
    assert torch.allclose(counts / counts.sum(), torch.tensor(p), atol=0.03)
    if k == 1:  # each draft token is accepted with probability sum(min(p, q)) = 0.45
        assert abs(acceptance.rate - 0.45) < 0.05


def test_command(llama_dir, draft_llama_dir, capsys):
    generate_speculatively(draft_llama_dir, llama_dir, "Hello", max_new_tokens=10, speculative_k=2, temperature=0.0)
    out, err = capsys.readouterr()
    assert out.startswith("Hello")
    assert "acceptance rate" in err and "Time for inference 1" in err
    with pytest.raises(ValueError, match="speculative_k"):
        generate_speculatively(draft_llama_dir, llama_dir, "Hello", speculative_k=0)

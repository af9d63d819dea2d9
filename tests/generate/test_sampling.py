import pytest
import torch

from litgpt.engine.core import StopWatcher
from litgpt.engine.sampling import probabilities, sample


def logits_of(*probs: float) -> torch.Tensor:
    return torch.tensor([probs]).log()  # (1, V)


def test_greedy_settings_take_the_argmax():
    logits = torch.randn(4, 50)
    expected = logits.argmax(-1)
    assert torch.equal(sample(logits, temperature=0.0), expected)
    assert torch.equal(sample(logits, temperature=1.5, top_k=1), expected)
    assert torch.equal(probabilities(logits, top_k=1).argmax(-1), expected)
    assert torch.equal(probabilities(logits, temperature=0.0).sum(-1), torch.ones(4))


def test_top_k_keeps_the_k_most_likely():
    probs = probabilities(logits_of(0.1, 0.4, 0.2, 0.3), top_k=2)
    assert torch.allclose(probs, torch.tensor([[0.0, 4 / 7, 0.0, 3 / 7]]))


@pytest.mark.parametrize(
    "top_p, kept",
    [(0.0, [0]), (0.5, [0]), (0.51, [0, 1]), (0.8, [0, 1]), (0.81, [0, 1, 2]), (0.95, [0, 1, 2]), (0.96, [0, 1, 2, 3]), (1.0, [0, 1, 2, 3])],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, kept):
    probs = probabilities(logits_of(0.5, 0.3, 0.15, 0.05), top_p=top_p)[0]
    assert (probs > 0).nonzero().flatten().tolist() == kept
    assert torch.allclose(probs.sum(), torch.tensor(1.0))


def test_temperature_flattens_or_sharpens():
    logits = logits_of(0.7, 0.2, 0.1)
    hot, cold = probabilities(logits, temperature=2.0), probabilities(logits, temperature=0.5)
    assert hot[0, 0] < 0.7 < cold[0, 0]


def test_fixed_seed_is_reproducible():
    logits = torch.randn(3, 100)
    draws = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(42)
        draws.append([sample(logits, temperature=1.0, top_p=0.9, generator=generator) for _ in range(5)])
    assert all(torch.equal(a, b) for a, b in zip(*draws))
    torch.manual_seed(7)
    first = sample(logits, top_k=20)
    torch.manual_seed(7)
    assert torch.equal(first, sample(logits, top_k=20))


def test_sampling_follows_the_distribution():
    generator = torch.Generator().manual_seed(0)
    logits = logits_of(0.6, 0.3, 0.1).expand(20000, -1)
    counts = torch.bincount(sample(logits, generator=generator), minlength=3) / 20000
    assert torch.allclose(counts, torch.tensor([0.6, 0.3, 0.1]), atol=0.02)


@pytest.mark.parametrize("kwargs", [dict(top_p=1.5), dict(top_p=-0.1), dict(temperature=-1.0), dict(top_k=0)])
def test_bad_settings_raise(kwargs):
    with pytest.raises(ValueError):
        sample(torch.randn(1, 5), **kwargs)


def test_stop_watcher_holds_back_partial_stop_sequences():
    watcher = StopWatcher([(7, 8, 9), 3])
    assert watcher.push(1) == [1]
    assert watcher.push(7) == []  # may start 7 8 9
    assert watcher.push(8) == []
    assert watcher.push(5) == [7, 8, 5]  # it did not
    assert watcher.push(7) == [] and watcher.push(8) == [] and watcher.push(9) == []
    assert watcher.stopped
    watcher = StopWatcher([(7, 8, 9)], include_stop=True)
    assert [watcher.push(t) for t in (7, 7, 8, 9)] == [[], [7], [], [7, 8, 9]]
    watcher = StopWatcher([3])
    assert watcher.push(3) == [] and watcher.stopped
    watcher = StopWatcher([(4, 5)])
    assert watcher.push(4) == [] and watcher.flush() == [4]


def test_sample_rows_gives_each_row_its_own_settings_in_one_call():
    from litgpt.engine.sampling import probabilities, sample_rows

    torch.manual_seed(0)
    B, V, draws = 4, 50, 4000
    logits = torch.randn(B, V) * 2
    temperature, top_k, top_p = [0.0, 1.0, 0.8, 1.5], [None, 5, None, None], [1.0, 1.0, 0.6, 1.0]
    uniform = torch.rand(draws, B)
    tokens = torch.stack([sample_rows(logits, temperature, top_k, top_p, u) for u in uniform])  # (draws, B)
    assert (tokens[:, 0] == logits[0].argmax()).all()  # temperature 0: greedy
    assert set(tokens[:, 1].tolist()) <= set(logits[1].topk(5).indices.tolist())  # top-k
    for row in (1, 2, 3):  # the frequencies follow the row's own distribution
        expected = probabilities(logits[row : row + 1], temperature[row], top_k[row], top_p[row])[0]
        counts = torch.bincount(tokens[:, row], minlength=V).float() / draws
        assert (counts - expected).abs().max() < 0.03, row
        assert (counts[expected == 0] == 0).all()  # nothing outside the nucleus / top-k


def test_sample_equals_sample_rows_with_the_generators_draw():
    from litgpt.engine.sampling import sample, sample_rows

    logits = torch.randn(1, 30)
    for seed in range(20):
        got = sample(logits, 0.8, 10, 0.9, generator=torch.Generator().manual_seed(seed))
        u = torch.rand(1, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(got, sample_rows(logits, [0.8], [10], [0.9], u))


def test_widths_round_up_to_a_power_of_two_and_looking_wider_draws_the_same():
    from litgpt.engine.sampling import RowSettings, sample_with

    settings = RowSettings([0.8, 0.0, 1.0, 0.7], [50, None, 40, 3000], [1.0, 1.0, 0.9, 1.0], vocab=1000)
    assert settings.widths == [64, 1, 64, 1000] and settings.width == 1000
    torch.manual_seed(0)
    logits = torch.randn(64, 1000)
    rows = RowSettings([0.8] * 64, [50] * 64, [0.9] * 64, vocab=1000).tensor(torch.device("cpu"))
    uniform = torch.rand(64)
    exact = sample_with(logits, rows, 50, uniform)
    assert torch.equal(sample_with(logits, rows, 64, uniform), exact)
    assert torch.equal(sample_with(logits, rows, 1000, uniform), exact)
    assert not torch.equal(sample_with(logits, rows.clone().index_fill_(1, torch.tensor([0]), 1000.0), 64, uniform), exact)

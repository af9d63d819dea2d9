"""benchmarks/synthetic_tokens.py's ZipfTokens: the same block at the same index in every run, and with `order=1`
each token the block's own Zipf draw shifted by a fixed function of the token before it (a bigram law)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from synthetic_tokens import ZipfTokens  # noqa: E402


def blocks(order: int, vocab_size: int = 64, seq: int = 200) -> list:
    data = ZipfTokens(vocab_size=vocab_size, blocks=3, order=order)
    data.connect(batch_size=1, max_seq_length=seq)
    data.check()
    dataset = data.train_dataloader().dataset
    return [dataset[i] for i in range(len(dataset))]


def test_order_one_shifts_each_draw_by_a_function_of_the_token_before():
    draws, tokens = blocks(0), blocks(1)
    seen = {}  # the shift after each token, recovered from the data
    for d, x in zip(draws, tokens):
        assert x.shape == d.shape == (201,) and x[0] == d[0] and 0 <= int(x.min()) and int(x.max()) < 64
        for t in range(1, len(x)):
            offset = (int(x[t]) - int(d[t])) % 64
            assert seen.setdefault(int(x[t - 1]), offset) == offset, "the shift after a token must not change"
    assert len(set(seen.values())) > len(seen) // 2  # a function of the token before, not one shift for all
    assert torch.equal(torch.stack(blocks(1)), torch.stack(tokens))  # the same blocks in every run


def test_bad_order_is_refused():
    data = ZipfTokens(order=2)
    data.connect(max_seq_length=8)
    with pytest.raises(ValueError, match="order 0 or 1"):
        data.check()

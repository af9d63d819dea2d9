"""`ZipfTokens`: a data module of generated token blocks, for benchmarks that run the real `litgpt pretrain`.

    PYTHONPATH=benchmarks litgpt pretrain tiny-llama-1.1b --data synthetic_tokens.ZipfTokens --data.vocab_size 32000 ...

Block `i` is drawn from its own generator (seeded by `seed` and `i`), so every process and every run sees the
same block at the same index, whatever the number of processes, and no file or tokenizer is needed. Tokens
follow a Zipf law (frequency of the k-th token ∝ 1 / k^exponent), which a model learns within a few steps:
the loss falls from ln(vocab_size) towards the distribution's entropy, so the first steps' losses tell runs
that train differently apart (uniform random tokens would leave every run at ln(vocab_size)).

With `--data.order 1` each token is instead the Zipf draw shifted by a fixed random function of the token before
it (`(shift[previous] + draw) mod vocab_size`): a bigram law with one row per token, which a model learns row by
row over many steps. The loss then keeps falling for hundreds of steps, from about ln(vocab_size) towards the
draws' entropy, on blocks never seen before: a learning curve with neither the Zipf law's early floor nor the
memorising of a small corpus (benchmarks/fp8_loss_curve.py compares float8 with bf16 on it).

LitGPT 0.5.13's own `pretrain` takes it too (benchmarks/reference.py runs it with benchmarks/ on PYTHONPATH): there
`litgpt.data.base.DataModule` is LitGPT's, whose `connect` is abstract (so it is written out here) and whose loop
needs a validation set (it checks two batches before training): give it `--data.val_blocks`.
"""

from dataclasses import dataclass, field
from typing import Any, Optional

from litgpt.data.base import DataModule


@dataclass
class ZipfTokens(DataModule):
    """Generated token blocks of `max_seq_length + 1` tokens; no validation set."""

    vocab_size: int = 32000
    """Tokens are ids 0 .. vocab_size - 1: at most the model's vocab_size"""
    blocks: int = 100_000
    """Blocks in the training set (generated on demand, so a large number costs nothing)"""
    exponent: float = 1.0
    """The Zipf exponent; 0 gives uniform tokens"""
    order: int = 0
    """0: independent draws; 1: each draw shifted by a fixed random function of the token before it (a bigram law)"""
    seed: int = 0
    """The seed of the blocks"""
    val_blocks: int = 0
    """Blocks in a validation set (the blocks after the training set's); 0: none"""

    tokenizer: Optional[Any] = field(default=None, init=False, repr=False)
    batch_size: int = field(default=1, init=False, repr=False)
    max_seq_length: int = field(default=-1, init=False, repr=False)

    def connect(self, tokenizer: Optional[Any] = None, batch_size: int = 1, max_seq_length: Optional[int] = None) -> None:
        self.tokenizer, self.batch_size = tokenizer, batch_size
        self.max_seq_length = -1 if max_seq_length is None else max_seq_length

    def check(self) -> None:
        if self.vocab_size < 2 or self.blocks < 1 or self.exponent < 0 or self.val_blocks < 0 or self.order not in (0, 1):
            raise ValueError(f"ZipfTokens needs vocab_size >= 2, blocks >= 1, exponent >= 0, val_blocks >= 0, order 0 or 1; got {self!r}")
        if self.max_seq_length < 1:
            raise ValueError("ZipfTokens needs a sequence length (--train.max_seq_length or the model's block_size)")

    def train_dataloader(self) -> Any:
        import torch

        # shuffle=False: under several processes Fabric's DistributedSampler deals block i to process i % N, so a
        # global batch holds the same blocks whatever the number of processes
        return torch.utils.data.DataLoader(_Blocks(self, 0, self.blocks), batch_size=self.batch_size, shuffle=False)

    def val_dataloader(self) -> Any:
        import torch

        if not self.val_blocks:
            return None
        return torch.utils.data.DataLoader(_Blocks(self, self.blocks, self.val_blocks), batch_size=self.batch_size, shuffle=False)


class _Blocks:
    """The map-style dataset behind `ZipfTokens`: `length` blocks from block `start` on."""

    def __init__(self, data: ZipfTokens, start: int, length: int) -> None:
        import torch

        self.data, self.start, self.length = data, start, length
        weights = torch.arange(1, data.vocab_size + 1, dtype=torch.float64) ** -data.exponent
        self.cdf = (weights.cumsum(0) / weights.sum()).float()
        # order 1: the shift that follows each token, the same for every block (drawn from `seed` alone)
        self.shift = torch.randperm(data.vocab_size, generator=torch.Generator().manual_seed(data.seed)).tolist()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Any:
        import torch

        if not 0 <= i < len(self):
            raise IndexError(i)
        generator = torch.Generator().manual_seed(self.data.seed * 1_000_003 + self.start + i)
        u = torch.rand(self.data.max_seq_length + 1, generator=generator)
        draws = torch.searchsorted(self.cdf, u).clamp_(max=self.data.vocab_size - 1)  # (T + 1,)
        if self.data.order == 0:
            return draws
        tokens, vocab_size, shift = draws.tolist(), self.data.vocab_size, self.shift
        for t in range(1, len(tokens)):  # each token's shift depends on the one before: a loop, ~1 ms a block of 2k
            tokens[t] = (shift[tokens[t - 1]] + tokens[t]) % vocab_size
        return torch.tensor(tokens)

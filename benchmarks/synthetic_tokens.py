"""`ZipfTokens`: a data module of generated token blocks, for benchmarks that run the real `litgpt pretrain`.

    PYTHONPATH=benchmarks litgpt pretrain tiny-llama-1.1b --data synthetic_tokens.ZipfTokens --data.vocab_size 32000 ...

Block `i` is drawn from its own generator (seeded by `seed` and `i`), so every process and every run sees the
same block at the same index, whatever the number of processes, and no file or tokenizer is needed. Tokens
follow a Zipf law (frequency of the k-th token ∝ 1 / k^exponent), which a model learns within a few steps:
the loss falls from ln(vocab_size) towards the distribution's entropy, so the first steps' losses tell runs
that train differently apart (uniform random tokens would leave every run at ln(vocab_size)).
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
    seed: int = 0
    """The seed of the blocks"""

    tokenizer: Optional[Any] = field(default=None, init=False, repr=False)
    batch_size: int = field(default=1, init=False, repr=False)
    max_seq_length: int = field(default=-1, init=False, repr=False)

    def check(self) -> None:
        if self.vocab_size < 2 or self.blocks < 1 or self.exponent < 0:
            raise ValueError(f"ZipfTokens needs vocab_size >= 2, blocks >= 1, exponent >= 0; got {self}")
        if self.max_seq_length < 1:
            raise ValueError("ZipfTokens needs a sequence length (--train.max_seq_length or the model's block_size)")

    def train_dataloader(self) -> Any:
        import torch

        # shuffle=False: under several processes Fabric's DistributedSampler deals block i to process i % N, so a
        # global batch holds the same blocks whatever the number of processes
        return torch.utils.data.DataLoader(_Blocks(self), batch_size=self.batch_size, shuffle=False)

    def val_dataloader(self) -> Any:
        return None


class _Blocks:
    """The map-style dataset behind `ZipfTokens`."""

    def __init__(self, data: ZipfTokens) -> None:
        import torch

        self.data = data
        weights = torch.arange(1, data.vocab_size + 1, dtype=torch.float64) ** -data.exponent
        self.cdf = (weights.cumsum(0) / weights.sum()).float()

    def __len__(self) -> int:
        return self.data.blocks

    def __getitem__(self, i: int) -> Any:
        import torch

        if not 0 <= i < len(self):
            raise IndexError(i)
        generator = torch.Generator().manual_seed(self.data.seed * 1_000_003 + i)
        u = torch.rand(self.data.max_seq_length + 1, generator=generator)
        return torch.searchsorted(self.cdf, u).clamp_(max=self.data.vocab_size - 1)  # (T + 1,)

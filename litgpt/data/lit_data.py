"""`LitData`: pretraining on token chunks that `litdata.optimize` wrote, in a local folder or at a cloud URI.

The steps every token-stream data set here shares live below it as well: writing chunks once
(`optimize_tokens`), knowing when they can be reused (`prepared`), streaming them in blocks of
`max_seq_length + 1` tokens (`token_dataset`, `token_loader`) and turning a failed download into one line
(`fetching`).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Tuple, Union

from litgpt.data.base import DataModule
from litgpt.data.chunks import check_num_workers, join, require_chunks, token_dataset, token_loader


@dataclass
class LitData(DataModule):
    """Token chunks made by `litdata.optimize` (with `TokensLoader`), streamed in blocks for pretraining."""

    data_path: Union[str, Path] = Path("data/")
    """A folder or cloud URI (s3://, gs://, ...) of optimized chunks; see `split_names` for train/val subfolders"""
    split_names: Optional[Tuple[str, str]] = None
    """The subfolders of `data_path` to train and validate on, e.g. (train, val); without them, both use all of it"""
    seed: int = 42
    """The seed of the shuffling of training samples"""
    num_workers: int = 8
    """Worker processes per data loader (0 loads in the training process)"""

    tokenizer: Optional[Any] = field(default=None, init=False, repr=False)
    batch_size: int = field(default=1, init=False, repr=False)
    max_seq_length: int = field(default=-1, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.split_names is not None and len(self.split_names) != 2:
            raise ValueError(f"--data.split_names takes two names (train, val), got {list(self.split_names)}")

    def connect(self, tokenizer: Optional[Any] = None, batch_size: int = 1, max_seq_length: Optional[int] = None) -> None:
        super().connect(tokenizer, batch_size, max_seq_length)
        self.max_seq_length = self.max_seq_length + 1  # each sample also holds the next token of its last position

    def _input_dir(self, split: int) -> str:
        return join(self.data_path, self.split_names[split]) if self.split_names else str(self.data_path)

    def check(self) -> None:
        check_num_workers(self.num_workers)
        for split in (0, 1):
            require_chunks(self._input_dir(split), "--data.data_path")

    def train_dataloader(self) -> Any:
        dataset = token_dataset(self._input_dir(0), self.max_seq_length, shuffle=True, seed=self.seed)
        return token_loader(dataset, self.batch_size, self.num_workers, self._input_dir(0))

    def val_dataloader(self) -> Any:
        # unshuffled, so that every validation sees the same samples
        dataset = token_dataset(self._input_dir(1), self.max_seq_length, shuffle=False, seed=self.seed)
        return token_loader(dataset, self.batch_size, self.num_workers, self._input_dir(1))

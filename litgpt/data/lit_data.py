"""`LitData`: pretraining on token chunks that `litdata.optimize` wrote, in a local folder or at a cloud URI."""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

from litgpt.data.base import DataModule
from litgpt.data.chunks import TokenStream, check_num_workers, join, require_chunks


@dataclass
class LitData(TokenStream, DataModule):
    """Token chunks made by `litdata.optimize` (with `TokensLoader`), streamed in blocks for pretraining."""

    data_path: Union[str, Path] = Path("data/")
    """A folder or cloud URI (s3://, gs://, ...) of optimized chunks; see `split_names` for train/val subfolders"""
    split_names: Optional[Tuple[str, str]] = None
    """The subfolders of `data_path` to train and validate on, e.g. (train, val); without them, both use all of it"""
    seed: int = 42
    """The seed of the shuffling of training samples"""
    num_workers: int = 8
    """Worker processes per data loader (0 loads in the training process)"""

    def __post_init__(self) -> None:
        if self.split_names is not None and len(self.split_names) != 2:
            raise ValueError(f"--data.split_names takes two names (train, val), got {list(self.split_names)}")

    def chunk_dirs(self) -> Tuple[str, str]:
        if self.split_names:
            return join(self.data_path, self.split_names[0]), join(self.data_path, self.split_names[1])
        return str(self.data_path), str(self.data_path)

    def check(self) -> None:
        check_num_workers(self.num_workers)
        for path in self.chunk_dirs():
            require_chunks(path, "--data.data_path")

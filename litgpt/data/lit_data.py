"""`LitData`: pretraining on token chunks that `litdata.optimize` wrote, in a local folder or at a cloud URI.

The steps every token-stream data set here shares live below it as well: writing chunks once
(`optimize_tokens`), knowing when they can be reused (`prepared`), streaming them in blocks of
`max_seq_length + 1` tokens (`token_dataset`, `token_loader`) and turning a failed download into one line
(`fetching`).
"""

import json
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from litgpt.data.base import DataModule

SOURCE_FILE = "source.json"


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


def is_remote(path: Union[str, Path]) -> bool:
    return "://" in str(path)


def join(base: Union[str, Path], *parts: str) -> str:
    """`base/parts` for a local folder or a URI alike (Path would turn s3:// into s3:/)."""
    if is_remote(base):
        return "/".join([str(base).rstrip("/"), *parts])
    return str(Path(base, *parts))


def check_num_workers(num_workers: int) -> None:
    if num_workers < 0:
        raise ValueError(f"--data.num_workers must be 0 or more, got {num_workers}")


def require_chunks(path: str, flag: str, hint: str = "") -> None:
    """A local folder must hold litdata's index.json; a URI is checked when it is streamed."""
    if not is_remote(path) and not (Path(path) / "index.json").is_file():
        raise FileNotFoundError(f"{flag}: {path!r} holds no litdata chunks (no index.json){hint}")


def prepared(out_dir: Path, source: Dict[str, Any]) -> bool:
    """Chunks in `out_dir` made from `source`, or made elsewhere (no source.json): either way, reuse them."""
    if not (out_dir / "index.json").is_file():
        return False
    marker = out_dir / SOURCE_FILE
    return not marker.is_file() or json.loads(marker.read_text(encoding="utf-8")) == source


def optimize_tokens(fn: Callable[[Any], Iterator[Any]], inputs: List[Any], out_dir: Path, source: Dict[str, Any]) -> None:
    """Write the token tensors `fn(input)` yields as chunks into `out_dir`, by way of a temporary folder so that an
    interrupted run leaves nothing half-made; `source` (what they were made from) is kept beside them."""
    from litdata import TokensLoader, optimize

    print(f"Tokenizing {len(inputs)} input(s) into {out_dir} ...", flush=True)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    optimize(
        fn=fn,
        inputs=inputs,
        output_dir=str(tmp),
        num_workers=max(1, min(len(inputs), (os.cpu_count() or 2) - 1)),
        chunk_bytes="200MB",
        item_loader=TokensLoader(),
        verbose=False,
        # litdata defaults to spawn, whose workers import torch afresh (seconds); fork is Linux's own default
        start_method="fork" if sys.platform == "linux" else None,
    )
    (tmp / SOURCE_FILE).write_text(json.dumps(source), encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)


def token_dataset(input_dir: str, block_size: int, shuffle: bool, seed: int) -> Any:
    from litdata.streaming import StreamingDataset, TokensLoader

    return StreamingDataset(
        input_dir=input_dir, item_loader=TokensLoader(block_size=block_size), shuffle=shuffle, drop_last=True, seed=seed
    )


def token_loader(dataset: Any, batch_size: int, num_workers: int, where: str) -> Any:
    import torch
    from litdata.streaming import CombinedStreamingDataset, StreamingDataLoader

    loader = StreamingDataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, drop_last=True, pin_memory=torch.cuda.is_available()
    )
    # a weighted mix that stops when either part runs out has no length to check
    sized = not isinstance(dataset, CombinedStreamingDataset) or dataset._iterate_over_all
    if sized and len(loader) == 0:
        raise ValueError(
            f"{where} holds fewer than {batch_size} samples per process; add data, or lower "
            "--train.micro_batch_size or --train.max_seq_length"
        )
    return loader


@contextmanager
def fetching(what: str, instead: str) -> Iterator[None]:
    """Any failure of the download inside becomes a one-line ConnectionError that says what to do instead."""
    try:
        yield
    except (ImportError, KeyboardInterrupt):
        raise
    except Exception as error:
        lines = str(error).strip().splitlines()
        reason = f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__
        raise ConnectionError(f"could not download {what} ({reason}); {instead}") from error

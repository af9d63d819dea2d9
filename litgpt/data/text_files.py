"""`TextFiles`: pretraining on a folder of plain-text files.

The files are tokenized once with `litdata.optimize` into `<train_data_path>/train` and `.../val`, and then
streamed in blocks of `max_seq_length + 1` tokens. A later run reuses those chunks as long as the text files
and the tokenizer are unchanged (their sizes, times and tokenizer hash are kept in `source.json`).
"""

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from litgpt.data.base import DataModule

_SOURCE_FILE = "source.json"


@dataclass
class TextFiles(DataModule):
    """A folder of .txt files for pretraining; without `val_data_path`, the first file (sorted) is the validation set."""

    train_data_path: Path
    """A folder of .txt files to train on"""
    val_data_path: Optional[Path] = None
    """A folder of .txt files to validate on (default: the first file of `train_data_path`)"""
    seed: int = 42
    """The seed of the shuffling of training samples"""
    num_workers: int = 4
    """Worker processes per data loader (0 loads in the training process)"""

    tokenizer: Optional[Any] = field(default=None, init=False, repr=False)
    batch_size: int = field(default=1, init=False, repr=False)
    max_seq_length: int = field(default=-1, init=False, repr=False)

    def __post_init__(self) -> None:
        self.train_data_path = Path(self.train_data_path)
        self.val_data_path = None if self.val_data_path is None else Path(self.val_data_path)
        self.out_path_train = self.train_data_path / "train"
        self.out_path_val = (self.train_data_path if self.val_data_path is None else self.val_data_path) / "val"

    def connect(self, tokenizer: Optional[Any] = None, batch_size: int = 1, max_seq_length: Optional[int] = None) -> None:
        super().connect(tokenizer, batch_size, max_seq_length)
        self.max_seq_length = self.max_seq_length + 1  # each sample also holds the next token of its last position

    def check(self) -> None:
        self._files()
        if self.tokenizer is None:
            raise ValueError("TextFiles needs a tokenizer: pass --tokenizer_dir")
        if self.num_workers < 0:
            raise ValueError(f"--data.num_workers must be 0 or more, got {self.num_workers}")

    def _files(self) -> "tuple[List[Path], List[Path]]":
        train_files = _text_files(self.train_data_path, "--data.train_data_path")
        if self.val_data_path is not None:
            return train_files, _text_files(self.val_data_path, "--data.val_data_path")
        if len(train_files) < 2:
            raise ValueError(
                f"{self.train_data_path} has one .txt file; without --data.val_data_path the first file is kept for "
                "validation, so at least two are needed"
            )
        return train_files[1:], train_files[:1]

    def prepare_data(self) -> None:
        train_files, val_files = self._files()
        for files, out_dir in ((train_files, self.out_path_train), (val_files, self.out_path_val)):
            source = _source(files, self.tokenizer)
            if _is_prepared(out_dir, source):
                continue
            _tokenize_to(files, out_dir, source, self.tokenizer)

    def train_dataloader(self) -> Any:
        return self._loader(self.out_path_train, shuffle=True)

    def val_dataloader(self) -> Any:
        # unshuffled, so that every validation sees the same samples (and a resumed run the same ones too)
        return self._loader(self.out_path_val, shuffle=False)

    def _loader(self, path: Path, shuffle: bool) -> Any:
        import torch
        from litdata.streaming import StreamingDataLoader, StreamingDataset, TokensLoader

        dataset = StreamingDataset(
            input_dir=str(path), item_loader=TokensLoader(block_size=self.max_seq_length), shuffle=shuffle, drop_last=True, seed=self.seed
        )
        loader = StreamingDataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers, drop_last=True, pin_memory=torch.cuda.is_available()
        )
        if len(loader) == 0:
            raise ValueError(
                f"{path} holds fewer than {self.batch_size} samples of {self.max_seq_length} tokens per process; "
                "add text, or lower --train.micro_batch_size or --train.max_seq_length"
            )
        return loader


def _text_files(folder: Path, flag: str) -> List[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{flag}: {str(folder)!r} is not a folder")
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"{flag}: no .txt files in {str(folder)!r}")
    return files


def _source(files: List[Path], tokenizer: Any) -> Dict[str, Any]:
    """What the tokenized chunks were made from; a change in any of it means tokenizing again."""
    digest = hashlib.sha256()
    for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"):
        path = Path(tokenizer.checkpoint_dir) / name
        if path.is_file():
            digest.update(name.encode() + path.read_bytes())
    return {
        "files": [[path.name, path.stat().st_size, path.stat().st_mtime_ns] for path in files],
        "tokenizer": digest.hexdigest(),
        "bos_id": tokenizer.bos_id,
    }


def _is_prepared(out_dir: Path, source: Dict[str, Any]) -> bool:
    marker = out_dir / _SOURCE_FILE
    if not marker.is_file() or not (out_dir / "index.json").is_file():
        return False
    return json.loads(marker.read_text(encoding="utf-8")) == source


def _tokenize_to(files: List[Path], out_dir: Path, source: Dict[str, Any], tokenizer: Any) -> None:
    """Tokenize into a temporary folder and move it in place, so an interrupted run leaves nothing half-made."""
    from functools import partial

    from litdata import TokensLoader, optimize

    print(f"Tokenizing {len(files)} file(s) into {out_dir} ...", flush=True)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    optimize(
        fn=partial(_tokenize_file, tokenizer=tokenizer),
        inputs=[str(path) for path in files],
        output_dir=str(tmp),
        num_workers=max(1, min(len(files), (os.cpu_count() or 2) - 1)),
        chunk_bytes="50MB",
        item_loader=TokensLoader(),
        verbose=False,
        # litdata defaults to spawn, whose workers import torch afresh (seconds); fork is Linux's own default
        start_method="fork" if sys.platform == "linux" else None,
    )
    (tmp / _SOURCE_FILE).write_text(json.dumps(source), encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)


def _tokenize_file(path: str, tokenizer: Any) -> Any:
    import torch

    text = Path(path).read_text(encoding="utf-8").strip()
    # a BOS token starts each file when the tokenizer has one
    yield tokenizer.encode(text, bos=tokenizer.bos_id is not None, eos=False).to(torch.int32)

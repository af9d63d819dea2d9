"""`TextFiles`: pretraining on a folder of plain-text files.

The files are tokenized once with `litdata.optimize` into `<train_data_path>/train` and `.../val`, and then
streamed in blocks of `max_seq_length + 1` tokens. A later run reuses those chunks as long as the text files
and the tokenizer are unchanged (their sizes, times and tokenizer hash are kept in `source.json`).
"""

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, List, Optional, Tuple

from litgpt.data.base import DataModule
from litgpt.data.chunks import TokenStream, check_num_workers, optimize_tokens, prepared, source_of


@dataclass
class TextFiles(TokenStream, DataModule):
    """A folder of .txt files for pretraining; without `val_data_path`, the first file (sorted) is the validation set."""

    train_data_path: Path
    """A folder of .txt files to train on"""
    val_data_path: Optional[Path] = None
    """A folder of .txt files to validate on (default: the first file of `train_data_path`)"""
    seed: int = 42
    """The seed of the shuffling of training samples"""
    num_workers: int = 4
    """Worker processes per data loader (0 loads in the training process)"""

    def __post_init__(self) -> None:
        self.train_data_path = Path(self.train_data_path)
        self.val_data_path = None if self.val_data_path is None else Path(self.val_data_path)
        self.out_path_train = self.train_data_path / "train"
        self.out_path_val = (self.train_data_path if self.val_data_path is None else self.val_data_path) / "val"

    def chunk_dirs(self) -> Tuple[str, str]:
        return str(self.out_path_train), str(self.out_path_val)

    def check(self) -> None:
        self._files()
        if self.tokenizer is None:
            raise ValueError("TextFiles needs a tokenizer: pass --tokenizer_dir")
        check_num_workers(self.num_workers)

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
            source = source_of(files, self.tokenizer)
            if not prepared(out_dir, source, foreign_ok=False):
                tokenize = partial(_tokenize_file, tokenizer=self.tokenizer)
                optimize_tokens(tokenize, [str(path) for path in files], out_dir, source, chunk_bytes="50MB")


def _text_files(folder: Path, flag: str) -> List[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{flag}: {str(folder)!r} is not a folder")
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"{flag}: no .txt files in {str(folder)!r}")
    return files


def _tokenize_file(path: str, tokenizer: Any) -> Any:
    import torch

    text = Path(path).read_text(encoding="utf-8").strip()
    # a BOS token starts each file when the tokenizer has one
    yield tokenizer.encode(text, bos=tokenizer.bos_id is not None, eos=False).to(torch.int32)

"""`OpenWebText`: the open recreation of GPT-2's WebText (https://huggingface.co/datasets/Skylion007/openwebtext).

Downloaded with `datasets`, split into training and validation documents, tokenized once by
`litdata.optimize` into `data_path/train` and `data_path/val` and streamed afterwards. A `data_path` that
already holds both folders (made here or elsewhere, locally or at a cloud URI) is used as it is.
"""

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Tuple, Union

from litgpt.data.base import DataModule
from litgpt.data.chunks import (
    TokenStream, check_num_workers, fetching, is_remote, join, optimize_tokens, prepared, require_chunks, source_of,
)

REPO_ID = "Skylion007/openwebtext"
DOCS_PER_INPUT = 1000  # documents per unit of work of litdata's workers


@dataclass
class OpenWebText(TokenStream, DataModule):
    """OpenWebText's 8 million web documents, downloaded and tokenized once into `data_path`, then streamed."""

    data_path: Union[str, Path] = Path("data/openwebtext")
    """Where the tokenized train/ and val/ folders go (or are, when it is a cloud URI such as s3://...)"""
    val_split_fraction: float = 0.0005
    """The fraction of the documents kept for validation"""
    seed: int = 42
    """The seed of the train/val split and of the shuffling of training samples"""
    num_workers: int = 8
    """Worker processes per data loader (0 loads in the training process)"""

    def __post_init__(self) -> None:
        self.data_path_train = join(self.data_path, "train")
        self.data_path_val = join(self.data_path, "val")

    def chunk_dirs(self) -> Tuple[str, str]:
        return self.data_path_train, self.data_path_val

    def check(self) -> None:
        check_num_workers(self.num_workers)
        if not 0 < self.val_split_fraction < 1:
            raise ValueError(f"--data.val_split_fraction must be between 0 and 1, got {self.val_split_fraction}")
        if is_remote(self.data_path):
            for path in (self.data_path_train, self.data_path_val):
                require_chunks(path, "--data.data_path")
        elif self.tokenizer is None:
            raise ValueError("OpenWebText needs a tokenizer: pass --tokenizer_dir")

    def _source(self) -> dict:
        return {**source_of([], self.tokenizer), "val_split_fraction": self.val_split_fraction, "seed": self.seed}

    def prepare_data(self) -> None:
        if is_remote(self.data_path):
            return
        out_dirs = (Path(self.data_path_train), Path(self.data_path_val))
        source = self._source()
        if all(prepared(out_dir, source) for out_dir in out_dirs):
            print(f"Using the tokenized OpenWebText in {self.data_path}", flush=True)
            return
        instead = "run again with network, or pass --data.data_path DIR holding its tokenized train/ and val/ folders"
        with fetching(f"the dataset {REPO_ID}", instead):
            documents = load_openwebtext()
        split = documents.train_test_split(test_size=self.val_split_fraction, seed=self.seed, shuffle=True)
        for part, out_dir in ((split["train"], out_dirs[0]), (split["test"], out_dirs[1])):
            spans = [(start, min(start + DOCS_PER_INPUT, len(part))) for start in range(0, len(part), DOCS_PER_INPUT)]
            optimize_tokens(partial(_tokenize_span, documents=part, tokenizer=self.tokenizer), spans, out_dir, source)


def load_openwebtext() -> Any:
    """The documents as a `datasets.Dataset` with a "text" column (cached by `datasets` under HF_HOME)."""
    import os

    from datasets import load_dataset

    return load_dataset(REPO_ID, split="train", num_proc=max(1, (os.cpu_count() or 2) // 2))


def _tokenize_span(span: Tuple[int, int], documents: Any, tokenizer: Any) -> Iterator[Any]:
    import torch

    for text in documents[span[0] : span[1]]["text"]:
        # an EOS token ends each document, as LitGPT's OpenWebText does
        yield tokenizer.encode(text, eos=True).to(torch.int32)

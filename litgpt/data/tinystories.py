"""`TinyStories`: short stories for small models (https://huggingface.co/datasets/roneneldan/TinyStories).

    data_path/
        TinyStories_all_data.tar.gz   downloaded from the Hub once (skipped when the .json shards are there)
        TinyStories_all_data/*.json   its shards: JSON lists of {"story": ...}; the first (sorted) is validation
        train/, val/                  the stories tokenized by `litdata.optimize`, streamed in training
"""

import json
import shutil
import tarfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator, List, Tuple

from litgpt.data.base import DataModule
from litgpt.data.chunks import TokenStream, check_num_workers, fetching, optimize_tokens, prepared, source_of

REPO_ID = "roneneldan/TinyStories"
ARCHIVE = "TinyStories_all_data.tar.gz"
SHARD_DIR = "TinyStories_all_data"


@dataclass
class TinyStories(TokenStream, DataModule):
    """The TinyStories stories, downloaded and tokenized once into `data_path`, then streamed."""

    data_path: Path = Path("data/tinystories")
    """Where the download, its .json shards and the tokenized train/ and val/ folders go"""
    seed: int = 42
    """The seed of the shuffling of training samples"""
    num_workers: int = 8
    """Worker processes per data loader (0 loads in the training process)"""

    def __post_init__(self) -> None:
        self.data_path = Path(self.data_path)
        self.data_path_train = self.data_path / "train"
        self.data_path_val = self.data_path / "val"

    def chunk_dirs(self) -> Tuple[str, str]:
        return str(self.data_path_train), str(self.data_path_val)

    def check(self) -> None:
        check_num_workers(self.num_workers)
        if self.tokenizer is None:
            raise ValueError("TinyStories needs a tokenizer: pass --tokenizer_dir")

    def prepare_data(self) -> None:
        shards = sorted((self.data_path / SHARD_DIR).glob("*.json"))
        if not shards and all((d / "index.json").is_file() for d in (self.data_path_train, self.data_path_val)):
            print(f"Using the tokenized TinyStories in {self.data_path}", flush=True)
            return
        shards = shards or download(self.data_path)
        if len(shards) < 2:
            raise ValueError(f"{self.data_path / SHARD_DIR} needs at least two .json shards: the first is validation")
        val_shard, *train_shards = shards
        for files, out_dir in ((train_shards, self.data_path_train), ([val_shard], self.data_path_val)):
            source = source_of(files, self.tokenizer)
            if not prepared(out_dir, source):
                optimize_tokens(partial(_tokenize_shard, tokenizer=self.tokenizer), [str(f) for f in files], out_dir, source)


def download(data_path: Path) -> List[Path]:
    """Fetch the archive from the Hub (HF_ENDPOINT and HF_HUB_OFFLINE apply) and unpack its .json shards."""
    archive = data_path / ARCHIVE
    if not archive.is_file():
        from huggingface_hub import hf_hub_download

        instead = f"put its .json shards in {data_path / SHARD_DIR} (or {ARCHIVE} in {data_path}) and run again"
        with fetching(f"{ARCHIVE} of the dataset {REPO_ID}", instead):
            hf_hub_download(REPO_ID, ARCHIVE, repo_type="dataset", local_dir=data_path)
    shard_dir = data_path / SHARD_DIR
    tmp = shard_dir.with_name(shard_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    print(f"Unpacking {archive} ...", flush=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    shutil.rmtree(shard_dir, ignore_errors=True)  # an earlier unpacking that left no .json shards
    tmp.replace(shard_dir)
    return sorted(shard_dir.glob("*.json"))


def _tokenize_shard(path: str, tokenizer: Any) -> Iterator[Any]:
    import torch

    with open(path, encoding="utf-8") as f:
        stories = json.load(f)
    for example in stories:
        # a BOS token starts each story when the tokenizer has one
        yield tokenizer.encode(example["story"].strip(), bos=tokenizer.bos_id is not None, eos=False).to(torch.int32)

"""Token chunks on disk: made once with `litdata.optimize` (through a temporary folder, fingerprinted by what
they were made from), then streamed in blocks. Every pretraining data module reads and writes them through here,
and `TokenStream` streams them for each."""

import hashlib
import json
import os
import shutil
import sys
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

SOURCE_FILE = "source.json"


class TokenStream:
    """What the pretraining data modules share (a mixin before `DataModule`, so that `--data`'s help keeps
    listing the data modules in the order they are defined): chunks streamed in samples of max_seq_length + 1
    tokens.

    A subclass is a dataclass with `seed` and `num_workers` fields that names its chunk folders in `chunk_dirs`.
    """

    seed: int
    num_workers: int

    def chunk_dirs(self) -> Tuple[str, str]:
        """The folders (or cloud URIs) of the training chunks and of the validation chunks."""
        raise NotImplementedError

    def connect(self, tokenizer: Optional[Any] = None, batch_size: int = 1, max_seq_length: Optional[int] = None) -> None:
        super().connect(tokenizer, batch_size, max_seq_length)  # DataModule.connect, the next class in the MRO
        self.max_seq_length = self.max_seq_length + 1  # each sample also holds the next token of its last position

    def train_dataloader(self) -> Any:
        return self._loader(self.chunk_dirs()[0], shuffle=True)

    def val_dataloader(self) -> Any:
        # unshuffled, so that every validation sees the same samples (and a resumed run the same ones too)
        return self._loader(self.chunk_dirs()[1], shuffle=False)

    def _loader(self, input_dir: str, shuffle: bool) -> Any:
        dataset = token_dataset(input_dir, self.max_seq_length, shuffle=shuffle, seed=self.seed)
        return token_loader(dataset, self.batch_size, self.num_workers, input_dir, block_size=self.max_seq_length)


def source_of(files: List[Path], tokenizer: Any) -> Dict[str, Any]:
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


def prepared(out_dir: Path, source: Dict[str, Any], foreign_ok: bool = True) -> bool:
    """Chunks in `out_dir` made from `source`; with `foreign_ok`, also chunks made elsewhere (no source.json)."""
    if not (out_dir / "index.json").is_file():
        return False
    marker = out_dir / SOURCE_FILE
    if not marker.is_file():
        return foreign_ok
    return json.loads(marker.read_text(encoding="utf-8")) == source


def optimize_tokens(
    fn: Callable[[Any], Iterator[Any]], inputs: List[Any], out_dir: Path, source: Dict[str, Any], chunk_bytes: str = "200MB"
) -> None:
    """Write the token tensors `fn(input)` yields as chunks into `out_dir`, by way of a temporary folder so that an
    interrupted run leaves nothing half-made; `source` (what they were made from) is kept beside them."""
    from litdata import TokensLoader, optimize

    print(f"Tokenizing {len(inputs)} input(s) into {out_dir} ...", flush=True)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    optimize(
        fn=partial(_one_thread, fn=fn),
        inputs=inputs,
        output_dir=str(tmp),
        num_workers=max(1, min(len(inputs), (os.cpu_count() or 2) - 1)),
        chunk_bytes=chunk_bytes,
        item_loader=TokensLoader(),
        verbose=False,
        # litdata defaults to spawn, whose workers import torch afresh (seconds); fork is Linux's own default
        start_method="fork" if sys.platform == "linux" else None,
    )
    (tmp / SOURCE_FILE).write_text(json.dumps(source), encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)


def _one_thread(item: Any, fn: Callable[[Any], Iterator[Any]]) -> Iterator[Any]:
    """`fn(item)` in a forked worker with one torch thread: the parent's OpenMP threads do not survive the fork,
    and a parallel region in the child (e.g. converting a long token tensor) would wait for them forever."""
    import torch

    torch.set_num_threads(1)
    yield from fn(item)


def token_dataset(input_dir: str, block_size: int, shuffle: bool, seed: int) -> Any:
    from litdata.streaming import StreamingDataset, TokensLoader

    return StreamingDataset(
        input_dir=input_dir, item_loader=TokensLoader(block_size=block_size), shuffle=shuffle, drop_last=True, seed=seed
    )


def token_loader(dataset: Any, batch_size: int, num_workers: int, where: str, block_size: int = 0) -> Any:
    import torch
    from litdata.streaming import CombinedStreamingDataset, StreamingDataLoader

    loader = StreamingDataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, drop_last=True, pin_memory=torch.cuda.is_available()
    )
    # a weighted mix that stops when either part runs out has no length to check
    sized = not isinstance(dataset, CombinedStreamingDataset) or dataset._iterate_over_all
    if sized and len(loader) == 0:
        of = f" of {block_size} tokens" if block_size else ""
        raise ValueError(
            f"{where} holds fewer than {batch_size} samples{of} per process; add data, or lower "
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

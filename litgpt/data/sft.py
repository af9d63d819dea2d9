"""Supervised finetuning data: records {"instruction", "input", "output"} become token ids and labels.

    prompt_style.apply(instruction, input=...)  ─► tokens (BOS ...)  ┐
    output                                      ─► tokens (... EOS)  ┴─► input_ids; labels = input_ids with
                                                                         the prompt part set to ignore_index
                                                                         when mask_prompt

`SFTData` is the base of every instruction data set here: it holds LitGPT's shared options and turns record
lists into data loaders; a subclass only says where its records come from (`records()`). `TokenizedRecords`
and `RecordData` hold what the preference data (DPO) shares with it.
"""

import json
import random
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from litgpt.data.base import DataModule
from litgpt.prompts import PromptStyle


class TokenizedRecords:
    """Records that become prompt + response samples when accessed (SFTDataset and PreferenceDataset)."""

    def __init__(self, data: List[Dict[str, Any]], tokenizer: Any, prompt_style: Any, max_seq_length: int = -1,
                 ignore_index: int = -100) -> None:
        self.data = data
        self.tokenizer = tokenizer
        self.prompt_style = prompt_style
        self.max_seq_length = max_seq_length
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.data)

    def sample(self, prompt_ids: Any, response_ids: Any, mask_prompt: bool = True) -> Dict[str, Any]:
        """{"input_ids", "labels"}: prompt and response cut to max_seq_length; the prompt's labels ignored if masked."""
        import torch

        input_ids = torch.cat((prompt_ids, response_ids)).long()
        if self.max_seq_length > 0:
            input_ids = input_ids[: self.max_seq_length]
        labels = input_ids.clone()
        if mask_prompt:
            labels[: len(prompt_ids)] = self.ignore_index
        return {"input_ids": input_ids, "labels": labels}


class SFTDataset(TokenizedRecords):
    """Records tokenized on access: each item is {"input_ids", "labels"} (1-D LongTensors)."""

    def __init__(
        self,
        data: List[Dict[str, Any]],
        tokenizer: Any,
        prompt_style: Any,
        max_seq_length: int = -1,
        mask_prompt: bool = True,
        ignore_index: int = -100,
        transform: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
    ) -> None:
        super().__init__(data, tokenizer, prompt_style, max_seq_length, ignore_index)
        self.mask_prompt = mask_prompt
        self.transform = transform

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        return self.sample(*self.encode(idx, self.max_seq_length), mask_prompt=self.mask_prompt)

    def encode(self, idx: int, max_length: int = -1) -> Tuple[Any, Any]:
        """The token ids of record `idx`'s prompt and of its response (EOS included), each cut to max_length."""
        example = self.data[idx]
        if self.transform is not None:
            example = self.transform(example)
        extra = {k: v for k, v in example.items() if k not in ("instruction", "output") and isinstance(v, str)}
        prompt = self.prompt_style.apply(example["instruction"], **extra)
        prompt_ids = self.tokenizer.encode(prompt, max_length=max_length)
        response_ids = self.tokenizer.encode(example["output"], bos=False, eos=True, max_length=max_length)
        return prompt_ids, response_ids

    def check(self, name: str) -> None:
        """`check_fields`, then raise a one-line ValueError when every record is longer than max_seq_length
        (training would see only cut-off samples)."""
        self.check_fields(name)
        if self.max_seq_length <= 0 or not self.data:
            return
        shortest = None
        for i in range(len(self.data)):  # stops at the first record that fits: one tokenization, usually
            length = sum(len(ids) for ids in self.encode(i))
            if length <= self.max_seq_length:
                return
            shortest = length if shortest is None else min(shortest, length)
        raise ValueError(
            f"All {len(self.data)} {name} records are longer than --train.max_seq_length={self.max_seq_length} "
            f"tokens (the shortest has {shortest}); raise it or shorten the data"
        )

    def check_fields(self, name: str) -> None:
        """Raise a one-line ValueError naming `name` and the record for a record without "instruction" or
        "output", or one whose "instruction", "output" or "input" is not a string ("input" may be null)."""
        for i, record in enumerate(self.data):
            try:
                example = record if self.transform is None else self.transform(record)
            except KeyError as missing:
                raise ValueError(f"{name} record {i} lacks the field {missing}") from None
            for key in ("instruction", "output"):
                if key not in example:
                    raise ValueError(f"{name} record {i} lacks the field {key!r}")
            for key in ("instruction", "output", "input"):
                value = example.get(key, "")
                if not isinstance(value, str) and not (key == "input" and value is None):
                    raise ValueError(
                        f"{name} record {i}: the field {key!r} must be a string, got {json.dumps(value, default=str)[:40]}; "
                        "fix or remove the record"
                    )


def get_sft_collate_fn(max_seq_length: int = -1, pad_id: int = 0, ignore_index: int = -100) -> Callable:
    """A collate function that right-pads a batch to its longest sample (input_ids with `pad_id`, labels with
    `ignore_index`), after cutting samples to `max_seq_length` when positive."""
    return partial(_collate, max_seq_length=max_seq_length, pad_id=pad_id, ignore_index=ignore_index)


def _collate(samples: List[Dict[str, Any]], max_seq_length: int, pad_id: int, ignore_index: int) -> Dict[str, Any]:
    # a module-level function: loader workers of spawned (multi-process CPU) runs must be able to pickle it
    import torch

    batch = {}
    for key, pad in (("input_ids", pad_id), ("labels", ignore_index)):
        seqs = [s[key][:max_seq_length] if max_seq_length > 0 else s[key] for s in samples]
        longest = max(len(s) for s in seqs)
        batch[key] = torch.stack([torch.cat((s, s.new_full((longest - len(s),), pad))) for s in seqs])
    return batch


class RecordData:
    """What the record data modules share, SFTData and Preference (a mixin before `DataModule`, so that `--data`'s
    help keeps listing the data modules in the order they are defined): paths and the prompt style from strings,
    the checks of the shared options, and the loaders.

    A subclass is a dataclass with `val_split_fraction`, `prompt_style`, `ignore_index`, `seed` and `num_workers`.
    """

    train_dataset: Optional[TokenizedRecords] = None
    test_dataset: Optional[TokenizedRecords] = None

    def __post_init__(self) -> None:
        for f in fields(self):  # a path given as a string (by a YAML file, or in Python) becomes the Path its field says
            value = getattr(self, f.name)
            if f.type is Path and not isinstance(value, Path):
                setattr(self, f.name, Path(value))
        if isinstance(self.prompt_style, str):
            self.prompt_style = PromptStyle.from_name(self.prompt_style)

    def check(self) -> None:
        if self.tokenizer is None:
            raise ValueError(f"{type(self).__name__} needs a tokenizer")
        if self.val_split_fraction is not None and not 0 < self.val_split_fraction < 1:
            raise ValueError(f"--data.val_split_fraction must be between 0 and 1, got {self.val_split_fraction}")
        if self.num_workers < 0:
            raise ValueError(f"--data.num_workers must be 0 or more, got {self.num_workers}")

    def collate_fn(self) -> Callable:
        return get_sft_collate_fn(self.max_seq_length, ignore_index=self.ignore_index)

    def loader(self, dataset: Any, shuffle: bool, collate_fn: Optional[Callable] = None) -> Any:
        """A DataLoader of `dataset`, shuffled by `seed` if `shuffle`; batches made by `collate_fn` or `self.collate_fn()`."""
        import torch
        from torch.utils.data import DataLoader

        return DataLoader(
            dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            collate_fn=collate_fn or self.collate_fn(),
        )

    def train_dataloader(self) -> Any:
        return self.loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> Any:
        return self.loader(self.test_dataset, shuffle=False)


@dataclass
class SFTData(RecordData, DataModule):
    """Base of the instruction data sets: the shared `--data.*` options, splitting and loading."""

    mask_prompt: bool = False
    """Exclude the prompt from the loss (its labels become ignore_index)"""
    val_split_fraction: Optional[float] = 0.05
    """The fraction of the records kept for validation"""
    prompt_style: Union[str, PromptStyle] = "alpaca"
    """The prompt style that wraps each instruction (a name such as "alpaca", or a PromptStyle)"""
    ignore_index: int = -100
    """The label of tokens that do not count in the loss"""
    seed: int = 42
    """The seed of the train/validation split and of the shuffling"""
    num_workers: int = 4
    """Worker processes per data loader"""
    packing: bool = False
    """Pack training samples into full rows of --train.max_seq_length tokens; attention and positions stay within
    each sample (tutorials/packing.md)"""
    inspect: int = 0
    """Print this many prepared training samples (trained tokens marked) and a summary of the set, then stop
    without training (tutorials/inspect-data.md)"""

    def check(self) -> None:
        super().check()
        if self.inspect < 0:
            raise ValueError(f"--data.inspect takes a number of samples to show (0 or more), got {self.inspect}")
        if self.packing and self.max_seq_length <= 0:
            raise ValueError("--data.packing true needs --train.max_seq_length: the length of the packed rows")
        self.check_records()

    def check_records(self) -> None:
        """Read the records now if they are here (a local file is cheap to read), so that a bad one fails before
        any work; records still to be downloaded are checked by `read` in setup."""
        try:
            self.records()
        except FileNotFoundError:
            pass

    def read(self, path: Path) -> List[Dict[str, Any]]:
        """The records of a local .json/.jsonl file, each checked: a bad one is a one-line error naming the file."""
        records = read_records(path)
        self.dataset(records).check_fields(str(path))
        return records

    def records(self) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]]:
        """The training records and the validation records (None: split them off the training records)."""
        raise NotImplementedError

    def transform(self, example: Dict[str, Any]) -> Dict[str, Any]:
        """Map a source record to {"instruction", "input", "output"}; the identity for Alpaca-style sources."""
        return example

    def setup(self, stage: str = "") -> None:
        train, val = self.records()
        name = type(self).__name__
        self.dataset(train).check(f"{name} training" if val is not None else name)  # record numbers as in the file
        if val is not None:
            self.dataset(val).check(f"{name} validation")
        else:
            train, val = split_records(train, self.val_split_fraction or 0.05, self.seed)
        self.train_dataset = self.dataset(train)
        self.test_dataset = self.dataset(val)

    def dataset(self, records: List[Dict[str, Any]]) -> SFTDataset:
        """`records` as an SFTDataset with this data set's tokenizer, prompt style and options."""
        return SFTDataset(
            records, tokenizer=self.tokenizer, prompt_style=self.prompt_style, max_seq_length=self.max_seq_length,
            mask_prompt=self.mask_prompt, ignore_index=self.ignore_index, transform=self.transform,
        )

    def train_dataloader(self) -> Any:
        if not self.packing:
            return super().train_dataloader()
        from litgpt.data.packing import PackedDataset, get_packed_collate_fn

        packed = PackedDataset(self.train_dataset, self.max_seq_length, self.ignore_index)
        return self.loader(packed, shuffle=True, collate_fn=get_packed_collate_fn(ignore_index=self.ignore_index))


def split_records(records: List[Any], val_fraction: float, seed: int) -> Tuple[List[Any], List[Any]]:
    """A seeded random split into (train, val), val holding round(len * val_fraction) records (at least one)."""
    if len(records) < 2:
        raise ValueError(f"Cannot split {len(records)} record(s) into training and validation sets")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = min(len(records) - 1, max(1, round(len(records) * val_fraction)))
    return [records[i] for i in order[n_val:]], [records[i] for i in order[:n_val]]


def train_val_files(folder: Path) -> Tuple[Path, Path]:
    """The train.json(l) and val.json(l) files of a `--data.json_path` folder."""
    found = []
    for stem in ("train", "val"):
        paths = [folder / f"{stem}{ext}" for ext in (".json", ".jsonl") if (folder / f"{stem}{ext}").is_file()]
        if not paths:
            raise FileNotFoundError(f"--data.json_path: {folder} needs {stem}.json or {stem}.jsonl")
        found.append(paths[0])
    return found[0], found[1]


def read_records(path: Path) -> List[Dict[str, Any]]:
    """Records of a .json file (a list) or a .jsonl file (one object a line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No data file at {str(path)!r}")
    text = path.read_text(encoding="utf-8")
    try:
        records = json.loads(text)
    except ValueError as error:
        if text.lstrip().startswith("["):  # one JSON document: say where it breaks
            raise ValueError(f"{path} is not valid JSON: line {error.lineno}, column {error.colno}: {error.msg}") from None
        records = []  # JSON Lines, whatever the file is called
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as error:
                    raise ValueError(f"{path} is not valid JSON (Lines): line {number}, column {error.colno}: {error.msg}") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path} must hold a list of objects with 'instruction' and 'output' keys")
    return records

"""Preference data for DPO: records {"prompt", "chosen", "rejected"} (and optionally "system") from JSON/JSONL.

    prompt_style.apply(prompt, sys_prompt=system)  ─► prompt tokens (BOS ...)     labels: ignore_index
    chosen   (EOS)                                 ─► chosen response tokens      labels: the tokens
    rejected (EOS)                                 ─► rejected response tokens    labels: the tokens

A batch of B pairs is one (2B, T) block: the B chosen rows, then the B rejected rows (`input_ids`, `labels`),
so that the policy and the reference each score a batch in one forward pass.
"""

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from litgpt.data.base import DataModule
from litgpt.data.sft import RecordData, TokenizedRecords, read_records, split_records, train_val_files
from litgpt.prompts import PromptStyle

FIELDS = ("prompt", "chosen", "rejected")


class PreferenceDataset(TokenizedRecords):
    """Pairs tokenized on access: {"input_ids", "labels"} of the chosen answer, "rejected_input_ids",
    "rejected_labels" of the rejected one (1-D LongTensors, prompt labels set to ignore_index)."""

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        record = self.data[idx]
        prompt = self.prompt_style.apply(record["prompt"], sys_prompt=record.get("system"))
        prompt_ids = self.tokenizer.encode(prompt)
        chosen, rejected = (
            self.sample(prompt_ids, self.tokenizer.encode(record[key], bos=False, eos=True)) for key in ("chosen", "rejected")
        )
        return {**chosen, "rejected_input_ids": rejected["input_ids"], "rejected_labels": rejected["labels"]}


def check_preference_records(records: List[Any], name: str) -> None:
    """Raise a one-line ValueError naming `name`, the record and the field for a record that is not an object with
    string "prompt", "chosen" and "rejected" (and, if present, a string or null "system")."""
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"{name} record {i} must be an object with {', '.join(FIELDS)}, got {json.dumps(record)[:40]}")
        for key in FIELDS + ("system",):
            if key not in record:
                if key == "system":
                    continue
                raise ValueError(f"{name} record {i} lacks the field {key!r} (each record needs {', '.join(FIELDS)})")
            value = record[key]
            if not isinstance(value, str) and not (key == "system" and value is None):
                raise ValueError(f"{name} record {i}: the field {key!r} must be a string, got "
                                 f"{json.dumps(value, default=str)[:40]}; fix or remove the record")


def _collate(items: List[Dict[str, Any]], pad_id: int, ignore_index: int) -> Dict[str, Any]:
    import torch

    rows = [(i["input_ids"], i["labels"]) for i in items] + [(i["rejected_input_ids"], i["rejected_labels"]) for i in items]
    longest = max(len(ids) for ids, _ in rows)
    pad = lambda t, value: torch.cat((t, t.new_full((longest - len(t),), value)))  # noqa: E731
    return {"input_ids": torch.stack([pad(ids, pad_id) for ids, _ in rows]),
            "labels": torch.stack([pad(lab, ignore_index) for _, lab in rows])}


@dataclass
class Preference(RecordData, DataModule):
    """Preference pairs {"prompt", "chosen", "rejected", "system" (optional)} from a .json/.jsonl file (split into
    training and validation by `val_split_fraction`) or a folder holding train.json(l) and val.json(l)."""

    json_path: Path = Path("prefs.json")
    """A .json/.jsonl file of preference records, or a folder with train.json and val.json (or .jsonl)"""
    val_split_fraction: float = 0.05
    """The fraction of a single file's records kept for validation"""
    prompt_style: Optional[Union[str, PromptStyle]] = None
    """How each prompt is wrapped: a style name, or unset for the base model's own (prompt_style.yaml, chat
    template or the style of its name)"""
    ignore_index: int = -100
    """The label of prompt and padding tokens"""
    seed: int = 42
    """The seed of the train/validation split and of the shuffling"""
    num_workers: int = 4
    """Worker processes per data loader"""

    def check(self) -> None:
        super().check()
        if self.prompt_style is None:
            raise ValueError("Preference needs a prompt style: set --data.prompt_style")
        self.records()

    def records(self) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]]:
        """The training records and the validation records (None: split off the training records), checked."""
        if self.json_path.is_dir():
            train, val = train_val_files(self.json_path)
            return self._read(train), self._read(val)
        if not self.json_path.is_file():
            raise FileNotFoundError(f"--data.json_path: no file or folder at {str(self.json_path)!r}")
        return self._read(self.json_path), None

    def _read(self, path: Path) -> List[Dict[str, Any]]:
        try:
            records = read_records(path)
        except ValueError as e:
            if "must hold a list of objects" not in str(e):
                raise
            raise ValueError(f"{path} must hold a list of objects with {', '.join(FIELDS)} keys") from None
        check_preference_records(records, str(path))
        if not records:
            raise ValueError(f"{path} holds no preference records")
        return records

    def setup(self, stage: str = "") -> None:
        train, val = self.records()
        if val is None:
            train, val = split_records(train, self.val_split_fraction, self.seed)
        self.train_dataset, self.test_dataset = self.dataset(train), self.dataset(val)

    def dataset(self, records: List[Dict[str, Any]]) -> PreferenceDataset:
        return PreferenceDataset(records, self.tokenizer, self.prompt_style, self.max_seq_length, self.ignore_index)

    def collate_fn(self) -> Callable:
        return partial(_collate, pad_id=0, ignore_index=self.ignore_index)

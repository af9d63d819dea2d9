"""Fixtures of the finetuning tests: a tiny instruction data set in the JSON format, written on the spot."""

import json
from pathlib import Path

import pytest

RECORDS = [
    {"instruction": "Say hello.", "input": "", "output": "Hello world!"},
    {"instruction": "Name a fast animal.", "input": "", "output": "The quick brown fox."},
    {"instruction": "Repeat the text.", "input": "one by one", "output": "one by one"},
    {"instruction": "Count to five.", "input": "", "output": "Numbers 12345"},
    {"instruction": "Say hello.", "input": "politely", "output": "Hello tokenizer!"},
    {"instruction": "Describe the dog.", "input": "", "output": "The lazy dog."},
]


@pytest.fixture
def json_data(tmp_path) -> Path:
    """A folder with train.json (6 records) and val.json (2 records)."""
    folder = tmp_path / "sft"
    folder.mkdir()
    (folder / "train.json").write_text(json.dumps(RECORDS))
    (folder / "val.json").write_text(json.dumps(RECORDS[:2]))
    return folder


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""Fixtures of the finetuning tests: a tiny instruction data set in the JSON format, written on the spot."""

import json
from pathlib import Path

import pytest

from finetune_helpers import RECORDS  # noqa: E402


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

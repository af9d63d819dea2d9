"""Fixtures for the training tests: a small text folder tokenized once per session."""

import shutil
from pathlib import Path

import pytest

from train_helpers import CORPUS


@pytest.fixture(scope="session")
def text_dir(tmp_path_factory) -> Path:
    """Three files of the shipped corpus (the first is the validation set), tokenized once for all tests."""
    from litgpt.data import TextFiles
    from litgpt.tokenizer import Tokenizer

    folder = tmp_path_factory.mktemp("text")
    for name in ("corpus_00.txt", "corpus_01.txt", "corpus_02.txt"):
        shutil.copy2(CORPUS / name, folder / name)
    data = TextFiles(folder, num_workers=0)
    data.connect(Tokenizer(CORPUS), batch_size=4, max_seq_length=32)
    data.prepare_data()
    return folder

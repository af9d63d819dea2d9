"""TextFiles: tokenized once with litdata and reused; clear errors for bad folders."""

import shutil

import pytest

from train_helpers import CORPUS


def _data(folder, **kwargs):
    from litgpt.data import TextFiles
    from litgpt.tokenizer import Tokenizer

    data = TextFiles(folder, num_workers=0, **kwargs)
    data.connect(Tokenizer(CORPUS), batch_size=2, max_seq_length=16)
    return data


def test_tokenized_once_then_reused(tmp_path, monkeypatch):
    import litdata

    for name in ("corpus_00.txt", "corpus_01.txt"):
        shutil.copy2(CORPUS / name, tmp_path / name)
    _data(tmp_path).prepare_data()
    chunks = sorted((tmp_path / "train").iterdir())
    stamps = [p.stat().st_mtime_ns for p in chunks]

    def refuse(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(litdata, "optimize", refuse)
    data = _data(tmp_path)
    data.prepare_data()
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "train").iterdir())] == stamps

    batch = next(iter(data.train_dataloader()))
    assert batch.shape == (2, 17)  # max_seq_length + 1: the targets' last token
    assert next(iter(data.val_dataloader())).shape == (2, 17)

    # a changed text file is noticed and tokenized again
    monkeypatch.undo()
    (tmp_path / "corpus_01.txt").write_text("A new story about a fox and an owl. " * 200)
    _data(tmp_path).prepare_data()
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "train").iterdir())] != stamps


def test_separate_validation_folder(tmp_path):
    train, val = tmp_path / "train_txt", tmp_path / "val_txt"
    train.mkdir()
    val.mkdir()
    shutil.copy2(CORPUS / "corpus_01.txt", train / "a.txt")
    shutil.copy2(CORPUS / "corpus_00.txt", val / "b.txt")
    data = _data(train, val_data_path=val)
    data.check()
    data.prepare_data()
    assert (train / "train" / "index.json").is_file() and (val / "val" / "index.json").is_file()


@pytest.mark.parametrize(
    "files, error, match",
    [
        (None, FileNotFoundError, "is not a folder"),
        ([], FileNotFoundError, "no .txt files in"),
        (["only.txt"], ValueError, "at least two are needed"),
    ],
)
def test_bad_folders(tmp_path, files, error, match):
    folder = tmp_path / "texts"
    if files is not None:
        folder.mkdir()
        for name in files:
            (folder / name).write_text("Some text.")
    with pytest.raises(error, match=match) as raised:
        _data(folder).check()
    assert "\n" not in str(raised.value)


def test_needs_a_tokenizer(tmp_path):
    from litgpt.data import TextFiles

    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("Some text.")
    data = TextFiles(tmp_path)
    data.connect(None, batch_size=1, max_seq_length=8)
    with pytest.raises(ValueError, match="--tokenizer_dir"):
        data.check()


def test_too_little_text_for_one_batch(tmp_path):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("Too short.")
    data = _data(tmp_path)
    data.prepare_data()
    with pytest.raises(ValueError, match="fewer than 2 samples of 17 tokens"):
        data.train_dataloader()


def test_tokenizing_in_forked_workers_after_the_parent_used_openmp(tmp_path, bpe_tokenizer_json):
    """The workers are forked: a parent that has run a parallel torch op must not leave them waiting forever on
    OpenMP threads that the fork did not copy (seen with a small vocabulary: long token tensors)."""
    import json
    import shutil
    import subprocess
    import sys

    texts, tokenizer = tmp_path / "texts", tmp_path / "tokenizer"
    texts.mkdir()
    tokenizer.mkdir()
    for name in ("corpus_00.txt", "corpus_01.txt", "corpus_02.txt"):
        shutil.copy2(CORPUS / name, texts / name)
    shutil.copy2(bpe_tokenizer_json, tokenizer / "tokenizer.json")
    (tokenizer / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}))
    script = f"""
import torch
torch.ones(512, 512) @ torch.ones(512, 512)  # the parent's OpenMP threads start
from litgpt.data import TextFiles
from litgpt.tokenizer import Tokenizer
data = TextFiles({str(texts)!r}, num_workers=0)
data.connect(Tokenizer({str(tokenizer)!r}), batch_size=2, max_seq_length=64)
data.prepare_data()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (texts / "train").is_dir() and (texts / "val").is_dir()

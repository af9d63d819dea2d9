"""The pretraining data sets streamed with litdata: LitData, TinyStories, OpenWebText, TinyLlama, MicroLlama.

No network: the downloads are replaced by local raw files laid out as the modules expect them, and a download
that cannot reach its server must end the CLI with one line.
"""

import contextlib
import io
import json
import tarfile
from functools import partial
from pathlib import Path

import pytest

from train_helpers import CORPUS, TINY_MODEL, logged

def _tokenizer():
    from litgpt.tokenizer import Tokenizer

    return Tokenizer(CORPUS)


def _corpus_docs(n: int = 3) -> list:
    """Paragraphs of the shipped corpus, as documents."""
    text = "\n\n".join((CORPUS / f"corpus_0{i}.txt").read_text(encoding="utf-8") for i in range(n))
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def _encode(text: str, tokenizer):
    import torch

    yield tokenizer.encode(text, eos=True).to(torch.int32)


def _optimize(out_dir: Path, docs: list) -> None:
    """Chunks as any litdata user would write them (what LitData and TinyLlama read)."""
    from litdata import TokensLoader, optimize

    optimize(
        fn=partial(_encode, tokenizer=_tokenizer()), inputs=docs, output_dir=str(out_dir), chunk_bytes="1MB",
        item_loader=TokensLoader(), num_workers=1, verbose=False, start_method="fork",
    )


def _refuse(*args, **kwargs):
    raise AssertionError("prepared again")


def _stamps(folder: Path) -> list:
    return [(p.name, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())]


# ---------------------------------------------------------------------------------------------------------
# LitData


def test_lit_data_pretrains_through_setup(tmp_path):
    from litgpt.config import Config
    from litgpt.data import LitData
    from litgpt.train.args import EvalArgs, TrainArgs
    from litgpt.train.pretrain import setup

    docs = _corpus_docs()
    _optimize(tmp_path / "chunks" / "train", docs[4:])
    _optimize(tmp_path / "chunks" / "val", docs[:4])
    out = tmp_path / "out"
    setup(
        model_config=Config(**TINY_MODEL), out_dir=out, precision="32-true", devices=1, logger_name="csv",
        data=LitData(tmp_path / "chunks", split_names=("train", "val"), num_workers=0), tokenizer_dir=CORPUS,
        train=TrainArgs(global_batch_size=4, micro_batch_size=2, max_seq_length=32, max_steps=3, log_interval=1,
                        save_interval=None, lr_warmup_steps=1, max_norm=1.0, min_lr=1e-4),
        eval=EvalArgs(interval=2, max_iters=1),
    )
    assert sorted(logged(out)) == [1, 2, 3]
    assert sorted(logged(out, "val_loss")) == [2, 3]
    assert (out / "final" / "lit_model.pth").is_file()


def test_lit_data_without_split_names_uses_the_whole_folder(tmp_path):
    from litgpt.data import LitData

    _optimize(tmp_path, _corpus_docs(1))
    data = LitData(tmp_path, num_workers=0)
    data.connect(None, batch_size=2, max_seq_length=16)
    data.check()
    assert next(iter(data.train_dataloader())).shape == (2, 17)
    assert next(iter(data.val_dataloader())).shape == (2, 17)


def test_lit_data_errors(tmp_path):
    from litgpt.data import LitData

    with pytest.raises(ValueError, match="two names"):
        LitData(tmp_path, split_names=("a", "b", "c"))
    data = LitData(tmp_path, split_names=("train", "val"))
    data.connect(None, batch_size=1, max_seq_length=8)
    with pytest.raises(FileNotFoundError, match="holds no litdata chunks") as raised:
        data.check()
    assert "\n" not in str(raised.value)
    LitData("s3://bucket/chunks", split_names=("train", "val")).check()  # a URI is checked when streamed


# ---------------------------------------------------------------------------------------------------------
# TinyStories


def _tinystories_shards(folder: Path, n: int = 3) -> None:
    docs = _corpus_docs()
    folder.mkdir(parents=True)
    for i in range(n):
        stories = [{"story": "  " + doc + "\n", "instruction": {}} for doc in docs[i::n]]
        (folder / f"data{i:02d}.json").write_text(json.dumps(stories), encoding="utf-8")


def _tinystories(path: Path):
    from litgpt.data import TinyStories

    data = TinyStories(path, num_workers=0)
    data.connect(_tokenizer(), batch_size=2, max_seq_length=16)
    data.check()
    return data


def test_tinystories_tokenized_from_local_shards_then_reused(tmp_path, monkeypatch):
    import litdata

    import litgpt.data.tinystories as tinystories

    _tinystories_shards(tmp_path / "TinyStories_all_data")
    monkeypatch.setattr(tinystories, "download", _refuse)  # the shards are there: no download
    data = _tinystories(tmp_path)
    data.prepare_data()
    assert (tmp_path / "train" / "index.json").is_file() and (tmp_path / "val" / "index.json").is_file()
    stamps = _stamps(tmp_path / "train"), _stamps(tmp_path / "val")

    monkeypatch.setattr(litdata, "optimize", _refuse)
    data = _tinystories(tmp_path)
    data.prepare_data()
    assert (_stamps(tmp_path / "train"), _stamps(tmp_path / "val")) == stamps
    assert next(iter(data.train_dataloader())).shape == (2, 17)
    assert next(iter(data.val_dataloader())).shape == (2, 17)


def test_tinystories_unpacks_a_downloaded_archive(tmp_path):
    """The archive where the download puts it (data_path/TinyStories_all_data.tar.gz) is unpacked, not fetched."""
    _tinystories_shards(tmp_path / "raw")
    with tarfile.open(tmp_path / "TinyStories_all_data.tar.gz", "w:gz") as tar:
        for shard in sorted((tmp_path / "raw").iterdir()):
            tar.add(shard, arcname=shard.name)
    _tinystories(tmp_path).prepare_data()
    assert len(list((tmp_path / "TinyStories_all_data").glob("*.json"))) == 3
    assert (tmp_path / "train" / "index.json").is_file() and (tmp_path / "val" / "index.json").is_file()


def test_tinystories_offline_is_one_line(tmp_path):
    """No shards and no network: the CLI run ends with one line that says what to do instead."""
    import os
    import subprocess
    import sys

    args = [
        "pretrain", "pythia-14m", "--data", "TinyStories", "--data.data_path", str(tmp_path / "ts"),
        "--data.num_workers", "0", "--tokenizer_dir", str(CORPUS), "--out_dir", str(tmp_path / "out"),
        "--train.max_steps", "1", "--train.max_seq_length", "16", "--train.micro_batch_size", "1",
        "--train.global_batch_size", "1", "--train.lr_warmup_steps", "0", "--precision", "32-true", "--logger_name", "csv",
        "--devices", "1",
    ]
    env = {k: v for k, v in os.environ.items() if k != "LITGPT_DEBUG"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    result = subprocess.run([sys.executable, "-m", "litgpt", *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("litgpt pretrain: error:")]
    assert len(lines) == 1, result.stderr
    assert "could not download TinyStories_all_data.tar.gz" in lines[0]
    assert str(tmp_path / "ts" / "TinyStories_all_data") in lines[0]


# ---------------------------------------------------------------------------------------------------------
# OpenWebText


def _openwebtext(path: Path):
    from litgpt.data import OpenWebText

    data = OpenWebText(path, val_split_fraction=0.25, num_workers=0)
    data.connect(_tokenizer(), batch_size=2, max_seq_length=16)
    data.check()
    return data


def test_openwebtext_tokenized_once_then_reused(tmp_path, monkeypatch):
    import datasets
    import litdata

    import litgpt.data.openwebtext as openwebtext

    docs = _corpus_docs()
    monkeypatch.setattr(openwebtext, "load_openwebtext", lambda: datasets.Dataset.from_dict({"text": docs}))
    _openwebtext(tmp_path).prepare_data()
    stamps = _stamps(tmp_path / "train"), _stamps(tmp_path / "val")

    monkeypatch.setattr(openwebtext, "load_openwebtext", _refuse)
    monkeypatch.setattr(litdata, "optimize", _refuse)
    data = _openwebtext(tmp_path)
    data.prepare_data()
    assert (_stamps(tmp_path / "train"), _stamps(tmp_path / "val")) == stamps
    assert next(iter(data.train_dataloader())).shape == (2, 17)
    assert next(iter(data.val_dataloader())).shape == (2, 17)


def test_openwebtext_download_failure_is_one_line(tmp_path, monkeypatch):
    import litgpt.data.openwebtext as openwebtext

    def offline():
        raise OSError("Couldn't reach 'Skylion007/openwebtext' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(openwebtext, "load_openwebtext", offline)
    with pytest.raises(ConnectionError, match="could not download the dataset Skylion007/openwebtext") as raised:
        _openwebtext(tmp_path).prepare_data()
    assert "\n" not in str(raised.value) and "--data.data_path" in str(raised.value)


def test_openwebtext_bad_split():
    from litgpt.data import OpenWebText

    data = OpenWebText(val_split_fraction=0.0)
    data.connect(_tokenizer(), batch_size=1, max_seq_length=8)
    with pytest.raises(ValueError, match="val_split_fraction"):
        data.check()


# ---------------------------------------------------------------------------------------------------------
# TinyLlama and MicroLlama


def test_tinyllama_mixes_slimpajama_and_starcoder(tmp_path):
    from litgpt.data import MicroLlama, TinyLlama

    docs = _corpus_docs()
    _optimize(tmp_path / "slimpajama" / "train", docs[4:])
    _optimize(tmp_path / "slimpajama" / "val", docs[:4])

    data = TinyLlama(tmp_path, num_workers=0)
    data.connect(None, batch_size=2, max_seq_length=16)
    with pytest.raises(FileNotFoundError, match="starcoder") as raised:
        data.check()
    assert "\n" not in str(raised.value)

    micro = MicroLlama(tmp_path, num_workers=0)  # SlimPajama only: no starcoder needed
    micro.connect(None, batch_size=2, max_seq_length=16)
    micro.check()
    assert not micro.use_starcoder
    assert next(iter(micro.train_dataloader())).shape == (2, 17)

    code = ["def add(a, b):\n    return a + b\n" * 20 for _ in range(20)]
    _optimize(tmp_path / "starcoder", code)
    data.check()
    loader = data.train_dataloader()
    batches = [batch for _, batch in zip(range(4), loader)]
    assert all(batch.shape == (2, 17) for batch in batches)
    assert next(iter(data.val_dataloader())).shape == (2, 17)


# ---------------------------------------------------------------------------------------------------------
# the CLI picks each by name


@pytest.mark.parametrize("name", ["LitData", "TinyStories", "OpenWebText", "TinyLlama", "MicroLlama"])
def test_selected_by_name_on_the_cli(name):
    from litgpt.__main__ import main

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.suppress(SystemExit):
        main(["pretrain", "pythia-14m", "--data", name, "--data.seed", "7", "--print_config"])
    printed = stdout.getvalue()
    assert f"class_path: litgpt.data.{name}" in printed
    assert "seed: 7" in printed and "num_workers: 8" in printed

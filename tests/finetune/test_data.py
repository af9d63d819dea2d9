"""The instruction data sets: tokenizing, prompt masking, padding, splitting, each source's record format."""

import json

import pytest
import torch

import litgpt.data
from litgpt.data import JSON, Alpaca, Dolly, LongForm, SFTDataset, get_sft_collate_fn
from litgpt.prompts import PromptStyle
from litgpt.tokenizer import Tokenizer


@pytest.fixture
def tokenizer(tiny_checkpoint):
    return Tokenizer(tiny_checkpoint)


@pytest.mark.parametrize("mask_prompt", [True, False])
def test_mask_prompt(tokenizer, mask_prompt):
    record = {"instruction": "Say hello.", "input": "politely", "output": "Hello world!"}
    style = PromptStyle.from_name("alpaca")
    item = SFTDataset([record], tokenizer, style, mask_prompt=mask_prompt, ignore_index=-7)[0]
    prompt = tokenizer.encode(style.apply("Say hello.", input="politely"))
    assert "### Input:\npolitely" in style.apply("Say hello.", input="politely")
    assert torch.equal(item["input_ids"][: len(prompt)], prompt)
    assert item["input_ids"][-1] == tokenizer.eos_id
    if mask_prompt:
        assert (item["labels"][: len(prompt)] == -7).all()
        assert torch.equal(item["labels"][len(prompt):], item["input_ids"][len(prompt):])
    else:
        assert torch.equal(item["labels"], item["input_ids"])
    short = SFTDataset([record], tokenizer, style, max_seq_length=10)[0]
    assert len(short["input_ids"]) == 10


def test_collate_pads_inputs_and_labels():
    collate = get_sft_collate_fn(max_seq_length=4, pad_id=0, ignore_index=-100)
    batch = collate([
        {"input_ids": torch.tensor([5, 6, 7, 8, 9]), "labels": torch.tensor([5, 6, 7, 8, 9])},
        {"input_ids": torch.tensor([1, 2]), "labels": torch.tensor([-100, 2])},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [1, 2, 0, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7, 8], [-100, 2, -100, -100]]


def test_json_file_split_and_loaders(tmp_path, tokenizer):
    records = [{"instruction": f"Task {i}", "input": "", "output": f"Answer {i}"} for i in range(20)]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    data = JSON(json_path=path, val_split_fraction=0.1, num_workers=0)
    with pytest.raises(ValueError, match="tokenizer"):
        data.check()
    data.connect(tokenizer, batch_size=3, max_seq_length=256)
    data.check()
    data.setup()
    assert len(data.train_dataset) == 18 and len(data.test_dataset) == 2
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape[0] == 3 and batch["input_ids"].shape == batch["labels"].shape
    with pytest.raises(ValueError, match="val_split_fraction must be between 0 and 1, got 1.5"):
        _connected(JSON(json_path=path, val_split_fraction=1.5), tokenizer).check()
    with pytest.raises(FileNotFoundError):
        _connected(JSON(json_path=tmp_path / "missing.json", val_split_fraction=0.1), tokenizer).check()


def test_one_json_file_without_a_split_keeps_five_percent_for_validation(tmp_path, tokenizer, capsys):
    """As LitGPT: --data.json_path FILE without --data.val_split_fraction is a one-line warning and a 5% split."""
    records = [{"instruction": f"Task {i}", "input": "", "output": f"Answer {i}"} for i in range(40)]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records))
    data = _connected(JSON(json_path=path, num_workers=0), tokenizer)
    data.check()
    warning = capsys.readouterr().err.splitlines()
    assert warning == [f"Warning: --data.json_path {str(path)!r} is one file and --data.val_split_fraction is unset: 5% of "
                       "its records are kept for validation (set --data.val_split_fraction to change it)"]
    assert data.val_split_fraction == 0.05
    data.setup()
    assert len(data.train_dataset) == 38 and len(data.test_dataset) == 2


def _connected(data, tokenizer):
    data.connect(tokenizer)
    return data


def test_local_files_are_used_offline(tmp_path, tokenizer):
    alpaca = Alpaca(download_dir=tmp_path / "alpaca", num_workers=0)
    (tmp_path / "alpaca").mkdir()
    (tmp_path / "alpaca" / alpaca.file_name).write_text(json.dumps([{"instruction": "a", "input": "", "output": "b"}] * 30))
    _connected(alpaca, tokenizer)
    alpaca.prepare_data()  # the file is there: nothing is fetched
    alpaca.setup()
    assert len(alpaca.test_dataset) == 1

    dolly = Dolly(download_dir=tmp_path / "dolly", num_workers=0)
    (tmp_path / "dolly").mkdir()
    rows = [{"instruction": "i", "context": "c", "response": "r", "category": "qa"}] * 10
    (tmp_path / "dolly" / dolly.file_name).write_text("\n".join(json.dumps(r) for r in rows))
    _connected(dolly, tokenizer).setup()
    assert dolly.transform(rows[0]) == {"instruction": "i", "input": "c", "output": "r"}
    assert len(dolly.train_dataset) == 9

    longform = LongForm(download_dir=tmp_path / "longform", num_workers=0)
    (tmp_path / "longform").mkdir()
    for name in ("train.json", "val.json"):
        (tmp_path / "longform" / name).write_text(json.dumps([{"input": "Write.", "output": "Text."}] * 3))
    _connected(longform, tokenizer).setup()
    assert type(longform.prompt_style).__name__ == "Longform"
    assert len(longform.train_dataset[0]["input_ids"]) > 0


def test_local_copies_of_hub_data_sets_are_used_offline(tmp_path, tokenizer):
    """Alpaca2k and Deita come from Hub data sets; a file already there is read, nothing is fetched (the repo
    ids here do not exist), and a folder given as a string (as YAML gives it) works as a Path."""
    from litgpt.data import Alpaca2k, Deita

    alpaca2k = Alpaca2k(download_dir=str(tmp_path / "a2k"), repo_id="nobody/no-such-data-set", num_workers=0)
    (tmp_path / "a2k").mkdir()
    (tmp_path / "a2k" / alpaca2k.file_name).write_text(json.dumps([{"instruction": "a", "input": "", "output": "b"}] * 20))
    _connected(alpaca2k, tokenizer).prepare_data()
    alpaca2k.setup()
    assert len(alpaca2k.train_dataset) == 19

    deita = Deita(download_dir=str(tmp_path / "deita"), repo_id="nobody/no-such-data-set", num_workers=0)
    (tmp_path / "deita").mkdir()
    chat = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    for name in ("train.json", "val.json"):
        (tmp_path / "deita" / name).write_text(json.dumps([chat] * 2))
    _connected(deita, tokenizer).prepare_data()
    deita.setup()
    assert len(deita.train_dataset) == 2 and len(deita.test_dataset) == 2


@pytest.mark.parametrize("name", [n for n in litgpt.data.__all__ if n not in ("DataModule", "SFTDataset", "get_sft_collate_fn")])
def test_every_data_flag_has_a_help_text(name):
    """Subclasses that only change defaults (Dolly, AlpacaGPT4, ...) take their flags' help from the base's docs."""
    from jsonargparse import ArgumentParser, set_parsing_settings

    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # as the litgpt command sets it
    parser = ArgumentParser()
    parser.add_class_arguments(getattr(litgpt.data, name), "data")
    flags = [action.dest for action in parser._actions if action.dest.startswith("data.")]
    assert flags and [flag for flag in flags if not parser._option_string_actions[f"--{flag}"].help] == []


def test_conversation_records():
    from litgpt.data.deita import conversation_records

    rows = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
                          {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]},
            {"conversations": ["hi", "hello"]}]
    assert conversation_records(rows, multiturn=False) == [
        {"instruction": "q1", "input": "", "output": "a1"}, {"instruction": "hi", "input": "", "output": "hello"}]
    multi = conversation_records(rows, multiturn=True)
    assert len(multi) == 3 and multi[1] == {"instruction": "q1\n\na1\n\nq2", "input": "", "output": "a2"}


def test_the_collate_function_pickles_for_spawned_loader_workers():
    import pickle

    import torch

    from litgpt.data.sft import get_sft_collate_fn

    collate = pickle.loads(pickle.dumps(get_sft_collate_fn(max_seq_length=3, pad_id=0, ignore_index=-1)))
    batch = collate([{"input_ids": torch.tensor([5, 6, 7, 8]), "labels": torch.tensor([5, 6, 7, 8])},
                     {"input_ids": torch.tensor([9]), "labels": torch.tensor([9])}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [9, 0, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7], [9, -1, -1]]

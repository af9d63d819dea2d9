"""The recipe set matches LitGPT's, and bad input fails with one clear line before any training."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from litgpt.data import JSON, Alpaca
from litgpt.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "config_hub" / "finetune"
# the recipes LitGPT 0.5.13 ships, model -> methods
LITGPT_RECIPES = {
    "falcon-7b": "lora qlora", "gemma-2b": "full lora qlora", "gemma-7b": "lora qlora", "gemma2-2b": "lora qlora",
    "gemma2-9b": "lora qlora", "llama-2-7b": "full lora qlora", "llama-3-8b": "full lora qlora",
    "llama-3.1-8b": "full lora qlora", "llama-3.2-1B": "full lora qlora", "llama-3.2-3B": "full lora qlora",
    "mistral-7b": "lora qlora", "mistral-7b-v0.2": "lora qlora", "phi-2": "full lora qlora", "phi-3": "full lora qlora",
    "stablelm-base-alpha-3b": "full lora qlora", "tiny-llama": "full lora qlora",
}
GOOD = {"instruction": "Say hello.", "input": "", "output": "Hello world!"}


def test_every_litgpt_recipe_is_here_and_in_the_readme():
    expected = {f"{model}/{method}.yaml" for model, methods in LITGPT_RECIPES.items() for method in methods.split()}
    assert {f"{p.parent.name}/{p.name}" for p in HUB.glob("*/*.yaml")} == expected
    readme = (HUB / "README.md").read_text()
    for recipe in expected:
        assert f"`{recipe}`" in readme
    assert "No runtime, memory or cost figures" in readme


@pytest.fixture
def tokenizer(tiny_checkpoint):
    return Tokenizer(tiny_checkpoint)


def json_data(path: Path, tokenizer, max_seq_length: int = -1, **kwargs) -> JSON:
    data = JSON(json_path=path, num_workers=0, **kwargs)
    data.connect(tokenizer, batch_size=1, max_seq_length=max_seq_length)
    return data


def test_invalid_json_names_the_file_and_line(tmp_path, tokenizer):
    path = tmp_path / "data.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "a" "output": "b"}\n]')
    with pytest.raises(ValueError, match=r"data\.json is not valid JSON: line 3, column 23: Expecting ',' delimiter"):
        json_data(path, tokenizer, val_split_fraction=0.5).check()


def test_invalid_json_lines_names_the_file_and_line(tmp_path, tokenizer):
    folder = tmp_path / "sft"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps(GOOD) + "\n\n" + json.dumps(GOOD) + "\n{oops}\n")
    (folder / "val.jsonl").write_text(json.dumps(GOOD))
    with pytest.raises(ValueError, match=r"train\.jsonl is not valid JSON \(Lines\): line 4, column 2"):
        json_data(folder, tokenizer).check()


def test_a_record_without_a_field_names_the_record_and_field(tmp_path, tokenizer):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([GOOD, GOOD, {"instruction": "no answer", "input": ""}]))
    with pytest.raises(ValueError, match=r"data\.json record 2 lacks the field 'output'"):
        json_data(path, tokenizer, val_split_fraction=0.5).check()


def test_a_downloaded_data_set_is_checked_at_check_or_setup(tmp_path, tokenizer):
    folder = tmp_path / "alpaca"
    folder.mkdir()
    alpaca = Alpaca(download_dir=folder, num_workers=0)
    alpaca.connect(tokenizer, batch_size=1)
    alpaca.check()  # not downloaded yet: nothing to check
    (folder / alpaca.file_name).write_text(json.dumps([GOOD, {"output": "no instruction"}, GOOD]))
    expected = r"alpaca_data_cleaned_archive\.json record 1 lacks the field 'instruction'"
    with pytest.raises(ValueError, match=expected):
        alpaca.setup()
    with pytest.raises(ValueError, match=expected):  # a local copy: before any work
        alpaca.check()


def test_all_records_longer_than_max_seq_length(tmp_path, tokenizer):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([GOOD] * 4))
    with pytest.raises(ValueError, match=r"All 4 .*data\.json records are longer than --train\.max_seq_length=8 tokens"):
        json_data(path, tokenizer, max_seq_length=8, val_split_fraction=0.5).check()
    long_enough = json_data(path, tokenizer, max_seq_length=512, val_split_fraction=0.5)
    long_enough.check()  # one record that fits is enough
    long_enough.setup()


def litgpt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LITGPT_DEBUG"}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "litgpt", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no_weights", r"No lit_model.pth in '.*empty'"),
        ("micro_batch", r"--train.global_batch_size \(4\) .* less than --train.micro_batch_size \(8\)"),
        ("unknown_key", r"unknown key 'train.max_seq_len' in the --config file; did you mean train.max_seq_length"),
        ("bad_json", r"bad\.json is not valid JSON: line 2, column 22"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, tiny_checkpoint, case, expected):
    import re

    good = tmp_path / "good.json"
    good.write_text(json.dumps([GOOD] * 4))
    args = ["finetune_lora", str(tiny_checkpoint), "--data", "JSON", "--data.json_path", str(good),
            "--data.val_split_fraction", "0.5", "--precision", "32-true", "--out_dir", str(tmp_path / "out")]
    if case == "no_weights":
        (tmp_path / "empty").mkdir()
        args[1] = str(tmp_path / "empty")
    elif case == "micro_batch":
        args += ["--train.micro_batch_size", "8", "--train.global_batch_size", "4"]
    elif case == "unknown_key":
        recipe = (HUB / "phi-2" / "lora.yaml").read_text().replace("  max_seq_length: 512", "  max_seq_len: 512")
        (tmp_path / "typo.yaml").write_text(recipe)
        args[2:2] = ["--config", str(tmp_path / "typo.yaml")]
    elif case == "bad_json":
        good.write_text('[{"instruction": "a", "output": "b"},\n {"instruction": "a" "output": "b"}]')
        good.rename(tmp_path / "bad.json")
        args[args.index(str(good))] = str(tmp_path / "bad.json")
    assert re.search(expected, one_line_error(litgpt(*args, cwd=tmp_path)))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.pth"))

"""The command line teaches: every flag in every `--help` says what it does, and a mistyped flag gets one line
that names it and the flag that was probably meant."""

import contextlib
import io
import os
import re
import subprocess
import sys
from typing import Dict, List

import pytest

from litgpt.__main__ import COMMANDS, main

_FLAG = re.compile(r"^  (-{1,2}[\w.\-]+)")
_TYPE_NOTE = re.compile(r"\((?:required, )?type: .*?\)\s*$", re.S)


def help_text(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit:
        main(list(args))
    assert exit.value.code == 0, args
    return out.getvalue()


def descriptions(text: str) -> Dict[str, str]:
    """Each flag of an argparse help text with the words that describe it (jsonargparse's type note left out)."""
    found: Dict[str, List[str]] = {}
    current = None
    for line in text.split("\n\n", 1)[-1].splitlines():  # past the usage paragraph, which names flags too
        match = _FLAG.match(line)
        if match:  # "  --flag METAVAR  words" or, for a long flag, the words on the next lines
            current = match.group(1)
            found[current] = [line.strip().split("  ", 1)[1] if "  " in line.strip() else ""]
        elif current and line.startswith(" " * 10):
            found[current].append(line.strip())
        else:
            current = None
    return {flag: _TYPE_NOTE.sub("", " ".join(words)).strip() for flag, words in found.items()}


def test_descriptions_parser_sees_a_missing_description():
    text = "usage: x\n\noptions:\n  --a A    Does a (type: int, default: 1)\n  --b.c C\n                        (type: int, default: 2)\n"
    assert descriptions(text) == {"--a": "Does a", "--b.c": ""}


def _data_modules() -> List[str]:
    import litgpt.data

    return [name for name in litgpt.data.__all__ if name not in ("DataModule", "SFTData", "SFTDataset", "get_sft_collate_fn")]


HELPS = [[name, "--help"] for name in sorted(COMMANDS)]
HELPS += [["finetune", "--data.help", name] for name in _data_modules()] + [["pretrain", "--model_config.help"]]


@pytest.mark.parametrize("args", HELPS, ids=" ".join)
def test_every_flag_has_a_description(args):
    flags = descriptions(help_text(*args))
    assert len(flags) > 1
    assert [flag for flag, words in flags.items() if not words] == []


def litgpt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "litgpt", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args, line",
    [
        (["--train.max_step", "5"], "unknown flag --train.max_step; did you mean --train.max_steps?"),
        (["--train.max_st", "5"], "unknown flag --train.max_st; did you mean --train.max_steps?"),  # no abbreviations
        (["--data", "TextFiles", "--data.train_data_pat", "x"], "unknown flag --data.train_data_pat; did you mean --data.train_data_path?"),
        (["--data", "TextFile"], "--data: unknown name 'TextFile'; did you mean TextFiles?"),
        (["--data.train_data_path", "x"], "--data.train_data_path needs --data NAME before it, NAME one of TextFiles"),
        (["--train.max_steps", "abc"], "--train.max_steps: expected int or null; got 'abc'"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_a_bad_flag_is_one_line_naming_the_flag_meant(args, line):
    result = litgpt("pretrain", "pythia-14m", *args)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"litgpt pretrain: error: {line} (`litgpt pretrain --help` lists the flags)"]


def test_a_misspelt_command_gets_a_suggestion():
    result = litgpt("finetune_lor", "x")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["litgpt: error: unknown command 'finetune_lor'; did you mean finetune_lora? (`litgpt --help` lists the commands)"]


def test_eta_follows_the_recent_rate_not_a_slow_start():
    from litgpt.train.monitor import Throughput

    throughput = Throughput(world_size=1, flops_per_iter=None, peak=None, window=3)
    throughput.update(60.0, 1, 1, 10)  # the first step took a minute (compilation)
    assert throughput.seconds_left(100) is None
    for i in range(2, 8):  # then one second per micro-batch
        throughput.update(60.0 + i - 1, i, i, 10 * i)
    assert throughput.seconds_left(100) == pytest.approx(100.0)


def test_start_summary_is_short_writes_the_settings_and_the_worker_warning_shows_once(tmp_path):
    code = f"""
import os
from pathlib import Path
from torch.utils.data import DataLoader
from litgpt.data import JSON
from litgpt.train.args import TrainArgs
from litgpt.train.monitor import announce_start

workers = len(os.sched_getaffinity(0)) + 1
announce_start("finetune_lora", "tiny (ckpt)", JSON(json_path=Path("data.json"), num_workers=workers), "LoRA", TrainArgs(max_steps=3),
               {{"class_path": "torch.optim.AdamW", "init_args": {{"lr": 0.002}}}}, Path({str(tmp_path / 'out')!r}),
               {{"train": {{"max_steps": 3}}}})
loader = DataLoader(list(range(4)), num_workers=workers)  # torch warns here
loader.check_worker_number_rationality()  # and again where the workers start
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "litgpt finetune_lora" and len(lines) == 9
    assert "  data     JSON (data.json)" in lines
    assert "  steps    max_steps 3; 64 samples per step, micro-batches of 4" in lines
    assert "  lr       0.002 (AdamW), warmup 100 steps, cosine decay to 0" in lines  # finetuning: min_lr unused
    assert f"  settings {tmp_path / 'out' / 'hyperparameters.yaml'} (all of them)" in lines
    assert (tmp_path / "out" / "hyperparameters.yaml").read_text() == "train:\n  max_steps: 3\n"
    workers = len(os.sched_getaffinity(0)) + 1
    assert f"           --data.num_workers {workers} is more than the {workers - 1} CPUs here: loading may be slow" in lines
    assert "This DataLoader will create" not in result.stderr


def test_export_writes_generation_config_when_the_folder_has_none(tiny_checkpoint, tmp_path):
    from transformers import GenerationConfig

    from litgpt.convert.lit_to_hf import convert_from_litgpt
    from litgpt.tokenizer import Tokenizer

    assert not (tiny_checkpoint / "generation_config.json").exists()
    convert_from_litgpt(tiny_checkpoint, tmp_path / "hf")
    tokenizer = Tokenizer(tiny_checkpoint)
    generation = GenerationConfig.from_pretrained(tmp_path / "hf")
    assert (generation.bos_token_id, generation.eos_token_id) == (tokenizer.bos_id, tokenizer.eos_id) != (None, None)


def test_a_misspelt_key_of_a_config_file_is_one_line(tmp_path):
    (tmp_path / "recipe.yaml").write_text("train:\n  max_step: 3\n")
    result = litgpt("pretrain", "pythia-14m", "--config", str(tmp_path / "recipe.yaml"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "litgpt pretrain: error: unknown key 'train.max_step' in the --config file; did you mean train.max_steps? "
        "(`litgpt pretrain --help` lists the flags)"
    ]

"""The real `litgpt` command line: nonsense numbers are one line before any output folder exists, the optimizer
takes LitGPT users' flag forms (and says the lr it uses), `litgpt validate` lists every problem and counts LoRA's
parameters as training does, an unreachable `--config` URL is one line, and a closed pipe ends quietly."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "config_hub" / "pretrain" / "quickstart.yaml"
CORPUS = ROOT / "litgpt" / "data" / "corpus"


def litgpt_command(*args: str) -> list:
    return [sys.executable, "-m", "litgpt", *args]


def environment() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LITGPT_DEBUG"}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


def litgpt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(litgpt_command(*args), cwd=cwd, env=environment(), capture_output=True, text=True, timeout=300)


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def pretrain_args(tmp_path: Path, *extra: str) -> list:
    """The quick-start recipe, shrunk to seconds: its model on a small text folder of our own, a few short rows."""
    texts = tmp_path / "texts"
    if not texts.is_dir():
        texts.mkdir()
        text = (CORPUS / "corpus_00.txt").read_text(encoding="utf-8")[:20000]
        (texts / "a.txt").write_text(text, encoding="utf-8")
        (texts / "b.txt").write_text(text[:4000], encoding="utf-8")
    return ["pretrain", "--config", str(QUICKSTART), "--data.train_data_path", str(texts), "--tokenizer_dir", str(CORPUS),
            "--train.max_seq_length", "16", "--train.global_batch_size", "2", "--train.micro_batch_size", "2",
            "--train.max_steps", "1", "--train.lr_warmup_steps", "0", "--train.save_interval", "1",
            "--eval.final_validation", "false", "--out_dir", str(tmp_path / "out"), *extra]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--train.max_norm", "-1"], "--train.max_norm must be a finite number > 0 (or unset), got -1.0"),
        (["--train.min_lr", "-1", "--eval.max_iters", "0"],
         "--train.min_lr must be a finite number >= 0, got -1.0; --eval.max_iters must be an integer >= 1, got 0"),
        (["--optimizer.lr", "0.0001"], "--train.min_lr (0.0003) must be at most the optimizer's lr (0.0001)"),
    ],
)
def test_nonsense_numbers_are_one_line_before_any_output(tmp_path, flags, expected):
    result = litgpt(*pretrain_args(tmp_path, *flags), cwd=tmp_path)
    assert one_line(result) == f"litgpt pretrain: error: {expected}"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flags",
    [
        ["--optimizer", "AdamW", "--optimizer.lr", "0.005"],
        ["--optimizer.class_path", "torch.optim.AdamW", "--optimizer.init_args.lr", "0.005"],
    ],
)
def test_optimizer_flag_forms_train_with_the_lr_given(tmp_path, flags):
    result = litgpt(*pretrain_args(tmp_path, *flags), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Optimizer: AdamW, lr 0.005 (warmup, then cosine decay to min_lr 0.0003)" in result.stdout
    hparams = yaml.safe_load((tmp_path / "out" / "final" / "hyperparameters.yaml").read_text())
    # the recipe's other arguments stay where the class is the recipe's
    assert hparams["optimizer"]["init_args"] == {"lr": 0.005, "weight_decay": 0.1, "betas": [0.9, 0.95]}


def test_optimizer_class_change_and_yaml_form(tmp_path):
    recipe = tmp_path / "sgd.yaml"
    recipe.write_text("optimizer:\n  class_path: torch.optim.SGD\n  init_args:\n    lr: 0.02\n    momentum: 0.5\n")
    result = litgpt(*pretrain_args(tmp_path, "--config", str(recipe), "--optimizer.init_args.momentum", "0.25"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Optimizer: SGD, lr 0.02" in result.stdout
    hparams = yaml.safe_load((tmp_path / "out" / "final" / "hyperparameters.yaml").read_text())
    assert hparams["optimizer"] == {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.02, "momentum": 0.25}}
    bad = litgpt(*pretrain_args(tmp_path, "--optimizer.init_args", "5"), cwd=tmp_path)
    assert "--optimizer.init_args takes a mapping" in one_line(bad)


def test_validate_lists_every_problem_and_counts_lora_as_training_does(tmp_path, tiny_checkpoint):
    result = litgpt("validate", str(tiny_checkpoint), "--train.max_norm", "-1", "--train.min_lr", "-1",
                    "--eval.interval", "0", "--optimizer.betas", "[0.9, 1.5]", cwd=tmp_path)
    assert result.returncode == 1
    problems = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("problem:")]
    assert problems == [
        "problem: --train.min_lr must be a finite number >= 0, got -1.0",
        "problem: --train.max_norm must be a finite number > 0 (or unset), got -1.0",
        "problem: --eval.interval must be an integer >= 1, got 0",
        "problem: --optimizer.betas must be a finite number >= 0 and < 1, got 1.5",
    ]
    assert one_line(result) == f"litgpt validate: error: 4 problem(s) found in {tiny_checkpoint}"

    estimate = litgpt("validate", str(tiny_checkpoint), "--training", "true", "--lora_r", "4", cwd=tmp_path)
    assert estimate.returncode == 0, estimate.stderr
    estimated = int(re.search(r"LoRA \(r=4, ([\d,]+) trainable\)", estimate.stdout).group(1).replace(",", ""))
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"instruction": "Say hello.", "input": "", "output": "Hello world!"}] * 4))
    run = litgpt("finetune_lora", str(tiny_checkpoint), "--lora_r", "4", "--data", "JSON", "--data.json_path", str(data),
                 "--data.val_split_fraction", "0.5", "--precision", "32-true", "--train.max_steps", "1",
                 "--train.global_batch_size", "1", "--train.micro_batch_size", "1", "--eval.final_validation", "false",
                 "--out_dir", str(tmp_path / "lora"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    trained = int(re.search(r"Parameters: [\d,]+ \(([\d,]+) trainable\)", run.stdout).group(1).replace(",", ""))
    assert estimated == trained


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket is


def test_an_unreachable_config_url_is_one_line(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/recipe.yaml"
    result = litgpt("pretrain", "--config", url, cwd=tmp_path)
    assert one_line(result) == (
        f"litgpt pretrain: error: --config {url} cannot be read: Connection refused "
        "(check the address and the network, or give a local file)"
    )


@pytest.mark.parametrize("args", [["evaluate", "list"], ["pretrain", "list"]])
def test_a_closed_pipe_ends_quietly(tmp_path, args):
    process = subprocess.Popen(litgpt_command(*args), cwd=tmp_path, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, bufsize=0)
    first = process.stdout.readline()
    assert first.strip()
    process.stdout.close()  # as `| head -1` does
    code = process.wait(timeout=120)
    stderr = process.stderr.read().decode()
    assert (code, stderr) == (0, "")

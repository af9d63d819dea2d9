"""The "Pretrain LLMs" section of the 0-to-LitGPT tutorial, command by command, with a local Hub.

One change to the commands as written: the pretraining run keeps tiny-llama-1.1b's architecture (Llama
blocks, RMSNorm, grouped queries, its 32,000-token vocabulary) but shrinks its depth and width through
`--model_config`, because the real 1.1B model needs about 18 GB for weights, gradients and AdamW state and
minutes per step on a CPU. Its data is a small text folder (TextFiles) instead of OpenWebText, which is
tens of gigabytes; OpenWebText's preparation is tested in tests/train/test_data_modules.py.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hub_server import FakeHub

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO = "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"
CORPUS = REPO_ROOT / "litgpt" / "data" / "corpus"


def litgpt(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`litgpt ARGS` as a user runs it, in `cwd`, with a clean huggingface_hub setup."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "LITGPT_DEBUG"}
    clean.update(
        PYTHONPATH=str(REPO_ROOT), HF_HOME=str(cwd / "hf_home"), HF_HUB_DISABLE_XET="1", HF_HUB_ENABLE_HF_TRANSFER="0",
        HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1,localhost", **env,
    )
    result = subprocess.run([sys.executable, "-m", "litgpt", *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"litgpt {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture
def hub(bpe_tokenizer_json):
    """TinyLlama's repo with only what `--tokenizer_only true` needs: tokenizer files and config.json."""
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 2048,
              "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4, "intermediate_size": 5632}
    tokenizer_config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "add_bos_token": True}
    with FakeHub() as hub:
        hub.add_repo(REPO, {
            "config.json": json.dumps(config), "tokenizer.json": bpe_tokenizer_json,
            "tokenizer_config.json": json.dumps(tokenizer_config),
        })
        yield hub


def test_pretrain_llms_section(hub, tmp_path):
    from litgpt.config import Config

    # litgpt pretrain list: every architecture, in alphabetical order
    names = litgpt("pretrain", "list", cwd=tmp_path).stdout.split()
    assert "tiny-llama-1.1b" in names and names == sorted(names)

    # litgpt download list | grep TinyLlama
    listed = litgpt("download", "list", cwd=tmp_path).stdout.splitlines()
    assert {REPO, "TinyLlama/TinyLlama-1.1B-Chat-v1.0"} <= {line for line in listed if "TinyLlama" in line}

    # litgpt download TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T --tokenizer_only true
    litgpt("download", REPO, "--tokenizer_only", "true", cwd=tmp_path, HF_ENDPOINT=hub.endpoint)
    tokenizer_dir = tmp_path / "checkpoints" / REPO
    assert (tokenizer_dir / "tokenizer.json").is_file()
    assert not any(p.suffix in (".safetensors", ".bin", ".pth") for p in tokenizer_dir.iterdir())

    # litgpt pretrain tiny-llama-1.1b --data ... --tokenizer_dir TinyLlama/...: the architecture, shrunk
    shrunk = dataclasses.replace(
        Config.from_name("tiny-llama-1.1b"), block_size=64, n_layer=2, n_embd=64, n_head=4, head_size=16,
        n_query_groups=2, intermediate_size=128,
    )
    (tmp_path / "tiny-llama-shrunk.yaml").write_text(yaml.safe_dump(dataclasses.asdict(shrunk)))
    texts = tmp_path / "texts"
    texts.mkdir()
    for name in ("corpus_00.txt", "corpus_01.txt"):
        (texts / name).write_text((CORPUS / name).read_text(encoding="utf-8"), encoding="utf-8")
    litgpt(
        "pretrain", "tiny-llama-1.1b", "--model_config", "tiny-llama-shrunk.yaml",
        "--data", "TextFiles", "--data.train_data_path", "texts", "--data.num_workers", "0",
        "--tokenizer_dir", REPO,  # the tutorial's bare ORG/NAME, found under checkpoints/
        "--train.max_steps", "2", "--train.micro_batch_size", "1", "--train.global_batch_size", "1",
        "--train.max_seq_length", "16", "--train.lr_warmup_steps", "0", "--eval.interval", "2", "--eval.max_iters", "1",
        "--precision", "32-true", "--devices", "1", "--logger_name", "csv",
        cwd=tmp_path,
    )
    final = tmp_path / "out" / "pretrain" / "final"
    assert (final / "lit_model.pth").is_file() and (final / "tokenizer.json").is_file()
    saved = yaml.safe_load((final / "model_config.yaml").read_text())
    assert saved["hf_config"]["org"] == "TinyLlama" and saved["n_layer"] == 2 and saved["padded_vocab_size"] == 32000

    # litgpt pretrain --help
    help_text = litgpt("pretrain", "--help", cwd=tmp_path).stdout
    assert "--data" in help_text and "--tokenizer_dir" in help_text and "--model_config" in help_text

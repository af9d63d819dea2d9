"""The "Finetune LLMs" section of tutorials/0_to_litgpt.md, run as a user runs it, on a tiny local model.

    litgpt finetune_lora microsoft/phi-2 --config config_hub/finetune/phi-2/lora.yaml --train.max_steps 5
    litgpt finetune_lora microsoft/phi-2 --config https://.../config_hub/finetune/phi-2/lora.yaml --train.max_steps 5
    litgpt chat out/finetune/lora-phi-2/final/

In place of phi-2: a 2-layer random Llama-style checkpoint; in place of Alpaca2k's download: a local JSON file;
and the least a CPU needs: 32-true precision and small batches.
"""

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPE = "config_hub/finetune/phi-2/lora.yaml"
RECORDS = [
    {"instruction": "Say hello.", "input": "", "output": "Hello world!"},
    {"instruction": "Name a fast animal.", "input": "", "output": "The quick brown fox."},
    {"instruction": "Repeat the text.", "input": "one by one", "output": "one by one"},
    {"instruction": "Describe the dog.", "input": "", "output": "The lazy dog."},
]


@pytest.fixture
def checkpoint(tmp_path, bpe_tokenizer_json) -> Path:
    """Like conftest's `tiny_checkpoint`, with a context long enough for Alpaca-style prompts, where the recipe's
    checkpoint_dir points (the tests run in tmp_path)."""
    import torch

    from litgpt.config import Config
    from litgpt.model import GPT

    folder = tmp_path / "checkpoints" / "microsoft" / "phi-2"  # where `litgpt download microsoft/phi-2` puts it
    folder.mkdir(parents=True)
    (folder / "tokenizer.json").write_bytes(bpe_tokenizer_json.read_bytes())
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "add_bos_token": True})
    )
    config = Config(
        name="tiny-phi-2", block_size=256, n_layer=2, n_embd=32, n_head=4, n_query_groups=2, vocab_size=400,
        padding_multiple=64, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=64, bias=False,
        rotary_percentage=1.0, parallel_residual=False,
    )
    config.save(folder / "model_config.yaml")
    torch.manual_seed(0)
    torch.save(GPT(config).state_dict(), folder / "lit_model.pth")
    return folder


def litgpt(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    """`python -m litgpt ARGS` in `cwd`, offline, on one CPU thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "LITGPT_DEBUG"}
    env.update(PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", NO_PROXY="127.0.0.1,localhost")
    result = subprocess.run(
        [sys.executable, "-m", "litgpt", *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"litgpt {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def tiny_run_overrides(tmp_path: Path, out_dir: Path) -> list:
    """The overrides a tiny CPU run needs on top of the recipe (the tutorial's own: --train.max_steps 5)."""
    data = tmp_path / "alpaca-like.json"
    data.write_text(json.dumps(RECORDS * 2))
    return [
        "--train.max_steps", "5",
        "--data", "JSON", "--data.json_path", str(data), "--data.val_split_fraction", "0.25", "--data.num_workers", "0",
        "--precision", "32-true", "--train.global_batch_size", "2", "--train.micro_batch_size", "1",
        "--train.max_seq_length", "256", "--eval.max_iters", "1", "--eval.max_new_tokens", "4",
        "--out_dir", str(out_dir),
    ]


def check_final(final: Path) -> None:
    for name in ("lit_model.pth", "lit_model.pth.lora", "model_config.yaml", "tokenizer.json", "tokenizer_config.json",
                 "prompt_style.yaml", "hyperparameters.yaml"):
        assert (final / name).is_file(), f"{name} missing from {final}: {sorted(p.name for p in final.iterdir())}"


def test_finetune_lora_with_the_recipe_file_then_chat(tmp_path, checkpoint):
    out_dir = tmp_path / "out" / "finetune" / "lora-phi-2"
    result = litgpt("finetune_lora", "microsoft/phi-2", "--config", str(REPO_ROOT / RECIPE), *tiny_run_overrides(tmp_path, out_dir), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert "Number of trainable parameters" in output
    assert f"settings {out_dir / 'hyperparameters.yaml'}" in output  # the start-up summary names the settings file
    final = out_dir / "final"
    check_final(final)
    hparams = (final / "hyperparameters.yaml").read_text()
    assert "max_steps: 5" in hparams and "lora_r: 8" in hparams and "lora_alpha: 16" in hparams  # the recipe's values

    # litgpt chat out/finetune/lora-phi-2/final/: one prompt, then an empty line to quit
    chat = litgpt("chat", str(final), "--max_new_tokens", "5", cwd=tmp_path, stdin="What is a llama?\n\n")
    assert ">> Reply: " in chat.stdout
    assert "Time for inference: " in chat.stderr


@pytest.fixture
def served_repo():
    """The repository tree served over HTTP, as raw.githubusercontent.com serves it in the tutorial."""
    handler = functools.partial(QuietHandler, directory=str(REPO_ROOT))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_finetune_lora_with_the_recipe_url(tmp_path, checkpoint, served_repo):
    out_dir = tmp_path / "out" / "finetune" / "lora-phi-2"
    url = f"{served_repo}/{RECIPE}"
    result = litgpt("finetune_lora", "microsoft/phi-2", "--config", url, *tiny_run_overrides(tmp_path, out_dir), cwd=tmp_path)
    check_final(out_dir / "final")
    assert "lora_dropout: 0.05" in (out_dir / "final" / "hyperparameters.yaml").read_text()  # the recipe's values

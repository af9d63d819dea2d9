"""The tutorial's download, chat, Python API, deploy and conversion sections, run as written.

A local Hub (tests/hub_server.py) serves a tiny random `microsoft/phi-2` in place of the real one; every
command runs as `python -m litgpt ...` in a fresh working folder, as a user types it.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from hub_server import FakeHub

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, bpe_tokenizer_json):
    """A working folder in which `litgpt download microsoft/phi-2` has run against a local Hub."""
    import torch
    from tokenizers import Tokenizer
    from transformers import PhiConfig, PhiForCausalLM

    repo = tmp_path_factory.mktemp("phi-2-repo")
    config = PhiConfig(
        vocab_size=Tokenizer.from_file(str(bpe_tokenizer_json)).get_vocab_size(), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=128, partial_rotary_factor=0.5,
        bos_token_id=0, eos_token_id=1,
    )
    torch.manual_seed(0)
    PhiForCausalLM(config).save_pretrained(repo)
    (repo / "tokenizer.json").write_bytes(bpe_tokenizer_json.read_bytes())
    (repo / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}))

    cwd = tmp_path_factory.mktemp("tutorial")
    with FakeHub() as hub:
        hub.add_repo("microsoft/phi-2", FakeHub.add_folder_files(repo))
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(cwd / "hf_home"), "HF_HUB_DISABLE_XET": "1"}
        listed = litgpt("download", "list", cwd=cwd, env=env)
        assert "microsoft/phi-2" in listed.stdout.splitlines()
        downloaded = litgpt("download", "microsoft/phi-2", cwd=cwd, env=env)
    assert "Traceback" not in downloaded.stderr
    return cwd


def litgpt(*args: str, cwd: Path, env: dict = None, stdin: str = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    environment.update(PYTHONPATH=str(REPO_ROOT), NO_PROXY="127.0.0.1,localhost", **(env or {}))
    result = subprocess.run(
        [sys.executable, "-m", "litgpt", *args], cwd=cwd, env=environment, input=stdin, capture_output=True,
        text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result


def python(code: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_download_leaves_a_folder_ready_to_chat(workdir):
    files = {p.name for p in (workdir / "checkpoints" / "microsoft" / "phi-2").iterdir()}
    assert {"config.json", "lit_model.pth", "model_config.yaml", "tokenizer.json", "tokenizer_config.json"} <= files


def test_chat(workdir):
    result = litgpt("chat", "microsoft/phi-2", cwd=workdir, stdin="Why are LLMs so useful?\n\n")
    out = result.stdout
    assert "Now chatting with phi-2." in out and "To exit, press 'Enter' on an empty prompt." in out
    assert out.count(">> Prompt:") == 2 and ">> Reply:" in out
    assert "Time for inference:" in result.stdout + result.stderr and "tokens/sec" in result.stdout + result.stderr


def test_python_api(workdir):
    code = (
        "from litgpt import LLM\n"
        "llm = LLM.load('microsoft/phi-2')\n"
        "text = llm.generate('What do Llamas eat?', top_k=1, max_new_tokens=30)\n"
        "again = LLM.load('checkpoints/microsoft/phi-2').generate('What do Llamas eat?', top_k=1, max_new_tokens=30)\n"
        "assert text == again and len(text) > 0, (text, again)\n"
        "print('OK')\n"
    )
    assert python(code, workdir).strip().endswith("OK")


def test_convert_to_hf_format_loads_in_transformers(workdir):
    litgpt("convert_from_litgpt", "microsoft/phi-2", "out/converted_model/", cwd=workdir)
    code = (
        "import torch\n"
        "from transformers import AutoModelForCausalLM\n"
        "from litgpt.checkpoint import load_model\n"
        "hf = AutoModelForCausalLM.from_pretrained('out/converted_model').eval()\n"
        "ours = load_model('checkpoints/microsoft/phi-2')\n"
        "x = torch.randint(0, 400, (1, 12))\n"
        "with torch.no_grad():\n"
        "    print(float((hf(x).logits - ours(x)[..., :hf.config.vocab_size]).abs().max()))\n"
    )
    assert float(python(code, workdir).strip().splitlines()[-1]) < 1e-4


def test_deploy(workdir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "litgpt", "serve", "microsoft/phi-2", "--port", str(port)], cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                response = requests.post(
                    f"http://127.0.0.1:{port}/predict", json={"prompt": "Fix typos in the following sentence: Exampel input"}
                )
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.time() < deadline, "the server did not come up"
                time.sleep(0.5)
        assert response.status_code == 200
        assert isinstance(response.json()["output"], str)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

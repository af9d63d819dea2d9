"""`litgpt download` against a local Hub (tests/hub_server.py): file selection, conversion, errors, resuming.

Each download runs the real CLI in a subprocess with HF_ENDPOINT pointing at the local server, as a user
would run it (huggingface_hub reads HF_ENDPOINT when it is imported).
"""

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from litgpt.checkpoint import CheckpointError
from litgpt.config import registry
from litgpt.hub import _weight_files, download, downloadable
from hub_server import FakeHub

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO = "tiny-org/tiny-llama"  # not in the registry: its config comes from config.json
TOKEN = "hf_granted_token"
# the CLI as `litgpt` runs it; the table entry is added here only until __main__.COMMANDS has it
CLI = (
    "import sys; from litgpt import __main__ as cli; "
    "cli.COMMANDS.setdefault('download', 'litgpt.hub:download'); cli.main(sys.argv[1:])"
)
DECOYS = {
    "pytorch_model.bin": b"decoy: the safetensors copy is preferred",
    "flax_model.msgpack": b"decoy: another framework",
    "README.md": "# tiny llama\n",
    ".gitattributes": "*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    "original/consolidated.00.pth": b"decoy: Meta's original format",
}


# ---------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory, bpe_tokenizer_json) -> Path:
    """A tiny random LlamaForCausalLM saved by transformers in sharded safetensors, with a trained tokenizer."""
    import torch
    from tokenizers import Tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny_llama")
    vocab_size = Tokenizer.from_file(str(bpe_tokenizer_json)).get_vocab_size()
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder, max_shard_size="40KB")  # several shards and an index
    (folder / "tokenizer.json").write_bytes(bpe_tokenizer_json.read_bytes())
    tokenizer_config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "add_bos_token": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    assert len(list(folder.glob("model-*.safetensors"))) >= 2
    return folder


@pytest.fixture
def hub(tiny_llama):
    with FakeHub(tokens=(TOKEN,)) as hub:
        hub.add_repo(REPO, {**FakeHub.add_folder_files(tiny_llama), **DECOYS})
        yield hub


def run(hub_or_endpoint, *args, cwd: Path, **env) -> subprocess.CompletedProcess:
    """`litgpt download ARGS` in `cwd`, against the given Hub, with a clean huggingface_hub setup."""
    endpoint = hub_or_endpoint if isinstance(hub_or_endpoint, str) else hub_or_endpoint.endpoint
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "LITGPT_DEBUG"}
    clean.update(
        HF_ENDPOINT=endpoint, HF_HOME=str(cwd / "hf_home"), HF_HUB_DISABLE_XET="1", HF_HUB_ENABLE_HF_TRANSFER="0",
        HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_ETAG_TIMEOUT="5", NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=str(REPO_ROOT),
    )
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", CLI, "download", *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=120
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    """The CLI's error: exactly one line on stderr, no traceback."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("litgpt download: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def files_in(folder: Path) -> set:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts}


# ---------------------------------------------------------------------------------------------------------
# listing and options checked before any download


def test_download_list_prints_every_registry_repo_sorted():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        download("list")
    lines = out.getvalue().splitlines()
    assert lines == downloadable()
    assert lines == sorted(lines, key=str.lower)
    assert len(lines) == len({f"{e['hf_config']['org']}/{e['hf_config']['name']}" for e in registry()})
    assert "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T" in lines
    assert "microsoft/phi-2" in lines


def test_cli_list_is_greppable_and_imports_no_heavy_modules(tmp_path):
    code = (
        "import sys; from litgpt import __main__ as cli; cli.COMMANDS.setdefault('download', 'litgpt.hub:download'); "
        "cli.main(['download', 'list']); assert 'torch' not in sys.modules and 'huggingface_hub' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if "TinyLlama" in line] == [
        "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"
    ]


def test_bad_options_fail_before_downloading(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="did you mean TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"):
        download("tiny-llama-1.1b")
    with pytest.raises(ValueError, match="ORG/NAME"):
        download("../../etc")
    with pytest.raises(ValueError, match="--model_name 'no-such-model'"):
        download("org/name", model_name="no-such-model")
    with pytest.raises(CheckpointError, match="unknown dtype 'float99'"):
        download("microsoft/phi-2", dtype="float99")
    assert not (tmp_path / "checkpoints").exists()


def test_options_reach_the_conversion(tmp_path, monkeypatch):
    import litgpt.convert.hf_to_lit
    import litgpt.hub

    fetched, converted = [], []
    monkeypatch.setattr(litgpt.hub, "fetch", lambda *args, **kwargs: fetched.append((args, kwargs)))
    monkeypatch.setattr(litgpt.convert.hf_to_lit, "convert_to_litgpt", lambda *a, **kw: converted.append((a, kw)))
    download("microsoft/phi-2", checkpoint_dir=tmp_path, access_token="hf_x", model_name="phi-2", dtype="bf16")
    assert fetched == [((("microsoft/phi-2", tmp_path / "microsoft" / "phi-2"), {"tokenizer_only": False, "token": "hf_x"}))]
    assert converted == [((tmp_path / "microsoft" / "phi-2",), {"model_name": "phi-2", "dtype": "bf16"})]
    download("microsoft/phi-2", checkpoint_dir=tmp_path, tokenizer_only=True)
    download("microsoft/phi-2", checkpoint_dir=tmp_path, convert_checkpoint=False)
    assert len(fetched) == 3 and len(converted) == 1
    assert fetched[1][1] == {"tokenizer_only": True, "token": None}


@pytest.mark.parametrize(
    "names, expected",
    [
        # safetensors preferred over .bin; an index names its shards (a consolidated copy is left alone)
        (["model.safetensors.index.json", "model-00001-of-00002.safetensors", "consolidated.safetensors",
          "pytorch_model.bin.index.json"], ("model.safetensors.index.json", [])),
        (["pytorch_model.bin", "model.safetensors"], (None, ["model.safetensors"])),
        (["pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin"], ("pytorch_model.bin.index.json", [])),
        (["pytorch_model.bin", "training_args.bin"], (None, ["pytorch_model.bin"])),
        (["weights.bin", "training_args.bin", "original/model.safetensors"], (None, ["weights.bin"])),
    ],
)
def test_weight_files_choice(names, expected):
    assert _weight_files("org/name", names) == expected


def test_weight_files_none():
    with pytest.raises(ValueError, match="--tokenizer_only true"):
        _weight_files("org/name", ["config.json", "tokenizer.json", "original/consolidated.00.pth"])


# ---------------------------------------------------------------------------------------------------------
# downloads


def test_download_converts_and_the_model_generates(hub, tiny_llama, tmp_path):
    import torch
    from transformers import LlamaForCausalLM

    from litgpt.checkpoint import load_model
    from litgpt.engine.batcher import generate_tokens
    from litgpt.tokenizer import Tokenizer

    result = run(hub, REPO, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "not in litgpt's registry" in result.stderr
    folder = tmp_path / "checkpoints" / REPO
    shards = sorted(p.name for p in tiny_llama.glob("model-*.safetensors"))
    wanted = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "model.safetensors.index.json", *shards}
    assert files_in(folder) == wanted | {"lit_model.pth", "model_config.yaml"}
    for name in wanted:  # the HF files are kept, byte for byte
        assert (folder / name).read_bytes() == (tiny_llama / name).read_bytes()
    for name in DECOYS:  # never even asked for
        assert not hub.served("GET", name) and not hub.served("HEAD", name)
    assert all(r.authorization is None for r in hub.requests)

    model = load_model(folder)
    tokenizer = Tokenizer(folder)
    prompt = tokenizer.encode("Hello world")
    with torch.inference_mode():
        reference = LlamaForCausalLM.from_pretrained(tiny_llama).eval()(prompt.view(1, -1)).logits
        logits = model(prompt.view(1, -1))[..., : reference.size(-1)]
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=1e-4)
    model.max_seq_length = 32
    model.set_kv_cache(batch_size=1)
    tokens = list(generate_tokens(model, prompt, 5, temperature=0.0))
    assert len(tokens) == 5 or tokens[-1] == tokenizer.eos_id
    assert isinstance(tokenizer.decode(torch.tensor(tokens)), str)


def test_tokenizer_only(hub, tmp_path):
    result = run(hub, REPO, "--tokenizer_only", "true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "registry" not in result.stderr  # no conversion, no config to derive
    folder = tmp_path / "checkpoints" / REPO
    assert files_in(folder) == {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}
    assert not any(r.path.endswith(".safetensors") or r.path.startswith("/cdn/") for r in hub.requests)


def test_no_conversion_keeps_the_hf_folder(hub, tmp_path):
    result = run(hub, REPO, "--convert_checkpoint", "false", "--checkpoint_dir", "elsewhere", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "elsewhere" / REPO
    assert "model.safetensors.index.json" in files_in(folder)
    assert not (folder / "lit_model.pth").exists()


# ---------------------------------------------------------------------------------------------------------
# access


def test_gated_repo_without_token(hub, tmp_path):
    hub.add_repo("gated-org/tiny-llama", hub.repos[REPO].files, gated=True)
    line = error_line(run(hub, "gated-org/tiny-llama", cwd=tmp_path))
    assert "gated-org/tiny-llama is gated" in line and "--access_token" in line and "HF_TOKEN" in line
    assert files_in(tmp_path / "checkpoints" / "gated-org" / "tiny-llama") == set()
    line = error_line(run(hub, "gated-org/tiny-llama", "--access_token", "hf_not_granted", cwd=tmp_path))
    assert "has no access" in line


def test_gated_repo_with_token(hub, tmp_path):
    hub.add_repo("gated-org/tiny-llama", hub.repos[REPO].files, gated=True)
    result = run(hub, "gated-org/tiny-llama", "--access_token", TOKEN, "--convert_checkpoint", "false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "model.safetensors.index.json" in files_in(tmp_path / "checkpoints" / "gated-org" / "tiny-llama")
    # the token goes to the Hub, never to the CDN
    assert all(r.authorization == f"Bearer {TOKEN}" for r in hub.requests if r.path.startswith("/gated-org/"))
    assert all(r.authorization is None for r in hub.requests if r.path.startswith("/cdn/"))


def test_gated_repo_with_hf_token_env(hub, tmp_path):
    hub.add_repo("gated-org/tiny-llama", hub.repos[REPO].files, gated=True)
    result = run(hub, "gated-org/tiny-llama", "--tokenizer_only", "true", cwd=tmp_path, HF_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert "tokenizer.json" in files_in(tmp_path / "checkpoints" / "gated-org" / "tiny-llama")


def test_unknown_repo(hub, tmp_path):
    line = error_line(run(hub, "nobody/nothing", cwd=tmp_path))
    assert "No model repo nobody/nothing" in line and "litgpt download list" in line


def test_hub_unreachable(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = error_line(run(f"http://127.0.0.1:{port}", REPO, cwd=tmp_path))
    assert "Cannot reach the Hugging Face Hub" in line and "HF_HUB_OFFLINE" in line


def test_offline_mode(hub, tmp_path):
    line = error_line(run(hub, REPO, cwd=tmp_path, HF_HUB_OFFLINE="1"))
    assert "HF_HUB_OFFLINE is set" in line
    assert not hub.requests


# ---------------------------------------------------------------------------------------------------------
# interruptions


def test_dropped_connection_resumes_within_the_run(hub, tmp_path):
    # huggingface_hub reads in 10 MiB chunks and resumes from the last whole chunk
    blob = os.urandom(12 * 1024 * 1024)
    hub.add_repo("big-org/big", {"config.json": "{}", "model.safetensors": blob})
    hub.drop_after("model.safetensors", 11 * 1024 * 1024)
    result = run(hub, "big-org/big", "--convert_checkpoint", "false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "checkpoints" / "big-org" / "big" / "model.safetensors").read_bytes() == blob
    gets = hub.served("GET", "model.safetensors")
    assert [(r.status, r.range) for r in gets] == [(-200, None), (206, "bytes=10485760-")]


def test_interrupted_download_completes_on_rerun(hub, tiny_llama, tmp_path):
    shards = sorted(p.name for p in tiny_llama.glob("model-*.safetensors"))
    first, last = shards[0], shards[-1]
    hub.drop_after(last, 1000, outage=True)  # the connection drops, then the Hub answers 503

    line = error_line(run(hub, REPO, cwd=tmp_path))
    assert "answered 503" in line and "run the same command again" in line
    folder = tmp_path / "checkpoints" / REPO
    assert first in files_in(folder) and last not in files_in(folder)
    assert not (folder / "lit_model.pth").exists()  # nothing converted from a partial download

    hub.end_outage()
    result = run(hub, REPO, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(hub.served("GET", first)) == 1  # complete files are not fetched again
    for name in shards:
        assert (folder / name).read_bytes() == (tiny_llama / name).read_bytes()
    assert (folder / "lit_model.pth").is_file() and (folder / "model_config.yaml").is_file()

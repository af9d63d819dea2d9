"""Every guide runs as written: the ```bash and ```python blocks of README.md and tutorials/**.md, offline, against
tiny models (the rules: tests/guides.py). Also: every relative link in README.md, tutorials/ and config_hub/
resolves.

One test per guide, so `pytest -n 2` (pytest-xdist, when installed) spreads them over cores.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from guides import CHAT_INPUT, GUIDE_PORTS, REPO_ROOT, TINY_MODELS, blocks, make_tiny_repo, shorten
from hub_server import FakeHub

GUIDES = sorted(
    [REPO_ROOT / "README.md", *(REPO_ROOT / "tutorials").rglob("*.md")], key=lambda p: str(p.relative_to(REPO_ROOT))
)
# README.md's quick start is one line that runs setup.sh (a network install) before the pretraining its Python
# blocks read from, so its blocks cannot run apart; tutorials/0_to_litgpt.md and pretrain.md run the same steps.
RUNNABLE = [p for p in GUIDES if p.name != "README.md" and blocks(p.read_text(encoding="utf-8"))]
LINKED = [*GUIDES, *(REPO_ROOT / "config_hub").rglob("*.md")]


def environment(workdir: Path, hub: FakeHub) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "LITGPT_DEBUG"}
    env.update(
        PYTHONPATH=str(REPO_ROOT), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HF_ENDPOINT=hub.endpoint, HF_HOME=str(workdir / ".hf_home"), HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1,localhost", PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="session")
def hub(tmp_path_factory, bpe_tokenizer_json):
    """The local Hub serving every name of TINY_MODELS."""
    with FakeHub() as hub:
        for name in TINY_MODELS:
            folder = make_tiny_repo(tmp_path_factory.mktemp("repo"), name, bpe_tokenizer_json)
            hub.add_repo(name, FakeHub.add_folder_files(folder))
        yield hub


@pytest.fixture(scope="session")
def downloaded(tmp_path_factory, hub) -> Path:
    """`checkpoints/` after `litgpt download NAME` of every name in TINY_MODELS (run side by side)."""
    folder = tmp_path_factory.mktemp("downloaded")
    runs = [
        subprocess.Popen([sys.executable, "-m", "litgpt", "download", name], cwd=folder, env=environment(folder, hub),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for name in TINY_MODELS
    ]
    for name, run in zip(TINY_MODELS, runs):
        assert run.wait(timeout=300) == 0, f"litgpt download {name}: {run.stderr.read()}"
    return folder / "checkpoints"


def workspace(tmp_path: Path, downloaded: Path) -> Path:
    shutil.copytree(downloaded, tmp_path / "checkpoints")
    (tmp_path / "config_hub").symlink_to(REPO_ROOT / "config_hub")
    (tmp_path / "litgpt" / "data").mkdir(parents=True)
    (tmp_path / "litgpt" / "data" / "corpus").symlink_to(REPO_ROOT / "litgpt" / "data" / "corpus")
    return tmp_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(command: list, cwd: Path, env: dict, port: int) -> subprocess.Popen:
    server = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True, text=True)
    deadline = time.time() + 120
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
            return server
        except requests.ConnectionError:
            if server.poll() is not None or time.time() > deadline:
                os.killpg(server.pid, signal.SIGKILL)
                pytest.fail(f"the guide's server did not come up: {server.stderr.read()[-3000:]}")
            time.sleep(0.3)


@pytest.mark.parametrize("guide", RUNNABLE, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_guide_runs_as_written(guide, hub, downloaded, tmp_path):
    cwd = workspace(tmp_path, downloaded)
    env = environment(cwd, hub)
    ports = {str(guide_port): str(free_port()) for guide_port in GUIDE_PORTS}
    servers = []
    try:
        for block in blocks(guide.read_text(encoding="utf-8")):
            if block.marker == "skip":
                continue
            code = re.sub("|".join(ports), lambda m: ports[m.group(0)], shorten(block.code))
            command = ["bash", "-eu", "-c", code] if block.language == "bash" else [sys.executable, "-c", code]
            where = f"{guide.relative_to(REPO_ROOT)}:{block.line}"
            if block.marker == "background":
                port = next(ports[p] for p in ports if p in block.code)
                servers.append(start_server(command, cwd, env, int(port)))
                continue
            run = subprocess.run(command, cwd=cwd, env=env, input=CHAT_INPUT, capture_output=True, text=True, timeout=240)
            assert run.returncode == 0, f"{where} failed:\n{code}\n--- stdout\n{run.stdout[-3000:]}\n--- stderr\n{run.stderr[-3000:]}"
    finally:
        for server in servers:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", LINKED, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#")[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO_ROOT)} links to missing files: {broken}"


def test_every_reference_tutorial_link_has_a_guide():
    """The links of the tutorial users follow (LitGPT's 0_to_litgpt.md) resolve inside tutorials/."""
    expected = ["download_model_weights", "inference", "python-api", "finetune", "finetune_lora", "finetune_adapter",
                "finetune_full", "prepare_dataset", "pretrain", "pretrain_tinyllama", "deploy", "convert_lit_models",
                "quantize", "oom", "0_to_litgpt"]
    missing = [name for name in expected if not (REPO_ROOT / "tutorials" / f"{name}.md").is_file()]
    assert not missing


def test_troubleshooting_lists_every_error():
    """Each error message in litgpt/ is in tutorials/troubleshooting.md (regenerate its list: python tests/guides.py)."""
    from guides import error_messages

    page = " ".join((REPO_ROOT / "tutorials" / "troubleshooting.md").read_text(encoding="utf-8").split())
    missing = [f"{module}: {m}" for module, messages in error_messages().items() for m in messages if m not in page]
    assert not missing, "not in tutorials/troubleshooting.md (python tests/guides.py prints the list):\n" + "\n".join(missing)

"""Fixtures for generation tests: tiny random checkpoints of three families (see tiny.py)."""

import pytest
from tiny import checkpoint, one_thread  # noqa: F401 (an autouse fixture)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    return checkpoint(tmp_path_factory, "tiny-random-llama", "llama")


@pytest.fixture(scope="session")
def draft_llama_dir(tmp_path_factory):
    """A smaller llama with the same tokenizer, as a draft model."""
    return checkpoint(tmp_path_factory, "tiny-random-llama-draft", "llama", seed=1)


@pytest.fixture(scope="session", params=["llama", "gpt_neox", "gemma"])
def family_dir(request, tmp_path_factory):
    return checkpoint(tmp_path_factory, f"tiny-random-{request.param}", request.param)

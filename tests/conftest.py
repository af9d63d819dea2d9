"""Shared fixtures: tiny real tokenizers trained on the spot, so tests need no network."""

from pathlib import Path

import pytest

# Latin, CJK and emoji (some of them several code points long), so that a small vocabulary leaves many
# characters split across byte-level tokens.
TOKENIZER_CORPUS = """\
The quick brown fox jumps over the lazy dog. Hello world, hello tokenizer!
Streaming text one token at a time must never split a character in half.
Large language models read tokens, not characters, and write them back one by one.
日本語のテキストも正しく扱う必要があります。你好，世界！
Emoji take four bytes: 🦊🐶🎉, and some take more: 👩‍💻 👍🏽.
Numbers 12345 and symbols #@$%^&*() should survive a round trip.
"""


@pytest.fixture(scope="session")
def tokenizer_corpus() -> str:
    """The text the tiny tokenizers are trained on."""
    return TOKENIZER_CORPUS


@pytest.fixture(scope="session")
def bpe_tokenizer_json(tmp_path_factory) -> Path:
    """A byte-level BPE `tokenizer.json` (Llama 3 / GPT-2 style) with `<|begin_of_text|>` and `<|end_of_text|>`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
        # every byte in the vocabulary, so any text encodes
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TOKENIZER_CORPUS.splitlines() * 10, trainer)
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


@pytest.fixture(scope="session")
def sentencepiece_model(tmp_path_factory) -> Path:
    """A SentencePiece BPE `tokenizer.model` (Llama 2 style) with byte fallback, `<s>`=1 and `</s>`=2."""
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("sentencepiece")
    corpus = folder / "corpus.txt"
    corpus.write_text(TOKENIZER_CORPUS * 10, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "tokenizer"),
        model_type="bpe",
        vocab_size=400,
        byte_fallback=True,
        # below 1.0 leaves the rarest characters to byte fallback
        character_coverage=0.98,
        minloglevel=2,
    )
    return folder / "tokenizer.model"


@pytest.fixture
def tiny_checkpoint(tmp_path, bpe_tokenizer_json) -> Path:
    """A complete checkpoint folder: a 2-layer random Llama-style GPT, its model_config.yaml and the BPE tokenizer."""
    import json
    import shutil

    import torch

    from litgpt.config import Config
    from litgpt.model import GPT

    folder = tmp_path / "tiny-llama-like"
    folder.mkdir()
    shutil.copy(bpe_tokenizer_json, folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "add_bos_token": True})
    )
    config = Config(
        name="tiny-llama-like", block_size=64, n_layer=2, n_embd=32, n_head=4, n_query_groups=2,
        vocab_size=400, padding_multiple=64, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP",
        intermediate_size=64, bias=False, rotary_percentage=1.0, parallel_residual=False,
    )
    config.save(folder / "model_config.yaml")
    torch.manual_seed(0)
    torch.save(GPT(config).state_dict(), folder / "lit_model.pth")
    return folder

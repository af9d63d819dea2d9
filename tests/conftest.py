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

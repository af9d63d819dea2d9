import json
import shutil
from pathlib import Path

import pytest
import torch

from litgpt.tokenizer import IncrementalDecoder, Tokenizer

# none of these is altered by SentencePiece's NFKC normalisation or whitespace folding
TEXTS = [
    "Hello world, hello tokenizer!",
    "日本語のテキストも正しく扱う",
    "Emoji 🦊🐶🎉 and 👩‍💻 👍🏽 too",
    "mixed: 你好 fox 🦊! 12345",
    "unseen: Ωμέγα ñandú 🚀 ẞ",
]


def make_checkpoint(folder: Path, tokenizer_file: Path, **json_files) -> Path:
    """A checkpoint folder with the tokenizer file and JSON files given as name=dict (`tokenizer_config`=...)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(tokenizer_file, folder / tokenizer_file.name)
    for name, content in json_files.items():
        (folder / f"{name}.json").write_text(json.dumps(content), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def llama_hf_dir(sentencepiece_model, tmp_path_factory) -> Path:
    """The SentencePiece model converted by `transformers` to a Llama 2 style tokenizer.json."""
    from transformers import LlamaTokenizer

    source = make_checkpoint(tmp_path_factory.mktemp("llama-src"), sentencepiece_model)
    folder = tmp_path_factory.mktemp("Llama-2-tiny")
    # as in real Llama 2 checkpoints, the post-processor prepends <s>
    LlamaTokenizer.from_pretrained(str(source), add_bos_token=True).save_pretrained(str(folder))
    post_processor = json.loads((folder / "tokenizer.json").read_text())["post_processor"]
    assert post_processor["single"][0]["SpecialToken"]["id"] == "<s>"
    return folder


@pytest.fixture
def bpe(bpe_tokenizer_json, tmp_path) -> Tokenizer:
    config = {"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|end_of_text|>"}, "add_bos_token": False}
    return Tokenizer(make_checkpoint(tmp_path / "bpe-tiny", bpe_tokenizer_json, tokenizer_config=config))


@pytest.fixture
def sp(sentencepiece_model, tmp_path) -> Tokenizer:
    return Tokenizer(make_checkpoint(tmp_path / "sp-tiny", sentencepiece_model))


def streamed(tokenizer, ids, context=None):
    """Fragments of an IncrementalDecoder fed `ids` one by one, then flushed."""
    decoder = IncrementalDecoder(tokenizer, context)
    fragments = [decoder.add(i) for i in ids] + [decoder.flush()]
    assert len(decoder._tokens) <= 16  # a window of recent tokens, not the whole history
    return fragments


def test_bpe_attributes_and_round_trip(bpe):
    assert bpe.backend == "huggingface"
    assert bpe.model_name == "bpe-tiny"
    assert bpe.vocab_size == 400
    assert bpe.bos_id == bpe.token_to_id("<|begin_of_text|>")
    assert bpe.eos_id == bpe.token_to_id("<|end_of_text|>")
    assert bpe.use_bos is False
    for text in TEXTS + ["  spaces\tand\nnewlines  "]:
        ids = bpe.encode(text)
        assert ids.dtype == torch.long and ids.ndim == 1
        assert bpe.decode(ids) == text
        assert bpe.decode(ids.tolist()) == text
    assert bpe.decode(bpe.encode("a")[0]) == "a"  # a 0-d tensor
    assert bpe.decode(int(bpe.encode("a")[0])) == "a"


def test_bos_eos_and_max_length(bpe):
    plain = bpe.encode("Hello world").tolist()
    bos, eos = bpe.bos_id, bpe.eos_id
    assert bpe.encode("Hello world", bos=True).tolist() == [bos] + plain
    assert bpe.encode("Hello world", eos=True).tolist() == plain + [eos]
    assert bpe.encode("Hello world", bos=True, eos=True, max_length=3).tolist() == [bos] + plain[:2]
    assert bpe.encode("Hello world", max_length=0).tolist() == plain
    # a prompt that already starts with the BOS token's text does not get a second one
    assert bpe.encode("<|begin_of_text|>Hello world", bos=True).tolist() == [bos] + plain
    assert bpe.decode(bpe.encode("Hello world", bos=True, eos=True)) == "Hello world"
    assert bpe.encode("x", device="cpu").device == torch.device("cpu")

    bpe.use_bos = True
    assert bpe.encode("Hello world").tolist() == [bos] + plain
    assert bpe.encode("Hello world", bos=False).tolist() == plain


def test_use_bos_from_post_processor(bpe_tokenizer_json, tmp_path):
    """Llama 3 style: no `add_bos_token`, but the post-processor prepends BOS; it is added exactly once."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.processors import TemplateProcessing

    hf = HFTokenizer.from_file(str(bpe_tokenizer_json))
    bos = hf.token_to_id("<|begin_of_text|>")
    hf.post_processor = TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    hf.save(str(tmp_path / "tokenizer.json"))
    folder = make_checkpoint(
        tmp_path / "Llama-3-tiny", tmp_path / "tokenizer.json", tokenizer_config={"bos_token": "<|begin_of_text|>"}
    )
    tokenizer = Tokenizer(folder)
    assert tokenizer.use_bos is True
    ids = tokenizer.encode("Hello").tolist()
    assert ids == hf.encode("Hello").ids and ids.count(bos) == 1
    assert bos not in tokenizer.encode("Hello", bos=False).tolist()


def test_special_ids_from_generation_config_and_config(bpe_tokenizer_json, tmp_path):
    folder = make_checkpoint(
        tmp_path / "ids",
        bpe_tokenizer_json,
        generation_config={"bos_token_id": 0, "eos_token_id": [1, 7]},
        config={"bos_token_id": 5, "eos_token_id": 6},
    )
    tokenizer = Tokenizer(folder)
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.use_bos) == (0, 1, False)

    (folder / "generation_config.json").unlink()
    assert (Tokenizer(folder).bos_id, Tokenizer(folder).eos_id) == (5, 6)

    # token strings in tokenizer_config.json win over the id files
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|begin_of_text|>"}))
    assert Tokenizer(folder).eos_id == 0

    (folder / "config.json").unlink()
    (folder / "tokenizer_config.json").unlink()
    tokenizer = Tokenizer(folder)
    assert tokenizer.bos_id is None and tokenizer.eos_id is None
    with pytest.raises(ValueError, match="no BOS"):
        tokenizer.encode("x", bos=True)
    with pytest.raises(ValueError, match="no EOS"):
        tokenizer.encode("x", eos=True)


def test_token_to_id_unknown(bpe, sp):
    for tokenizer in (bpe, sp):
        with pytest.raises(ValueError, match="not in the vocabulary"):
            tokenizer.token_to_id("<definitely-not-a-token>")
    assert sp.token_to_id("<s>") == 1


def test_sentencepiece(sp, sentencepiece_model, tmp_path):
    assert sp.backend == "sentencepiece"
    assert (sp.vocab_size, sp.bos_id, sp.eos_id, sp.use_bos) == (400, 1, 2, False)
    for text in TEXTS:
        assert sp.decode(sp.encode(text)) == text
    # a Llama checkpoint's tokenizer_config.json: BOS by default, ids from the token strings
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>"}
    llama = Tokenizer(make_checkpoint(tmp_path / "llama", sentencepiece_model, tokenizer_config=config))
    assert llama.use_bos is True
    assert llama.encode("Hello").tolist() == [1] + sp.encode("Hello").tolist()


@pytest.mark.parametrize("which", ["sp", "llama_hf"])
def test_lone_token_keeps_leading_space(which, sp, llama_hf_dir):
    tokenizer = sp if which == "sp" else Tokenizer(llama_hf_dir)
    ids = tokenizer.encode("Hello world, hello tokenizer!", bos=False).tolist()
    whole = tokenizer.decode(ids)
    assert whole == "Hello world, hello tokenizer!"
    # the text starts with a space-marked piece; decoded alone every piece keeps its space
    assert "".join(tokenizer.decode([i]) for i in ids) == " " + whole


@pytest.mark.parametrize("which", ["bpe", "sp", "llama_hf"])
def test_incremental_decoder_never_splits_characters(which, bpe, sp, llama_hf_dir):
    tokenizer = {"bpe": bpe, "sp": sp}.get(which) or Tokenizer(llama_hf_dir)
    for text in TEXTS:
        ids = tokenizer.encode(text, bos=True, eos=True).tolist()
        fragments = streamed(tokenizer, ids)
        assert not any("\ufffd" in f for f in fragments)
        assert "".join(fragments) == tokenizer.decode(ids) == text
        if any(ord(c) > 0x7FF for c in text):
            assert "" in fragments[:-1]  # something was held back for a later byte
        assert "".join(tokenizer.decode_stream(iter(torch.tensor(ids)))) == text


@pytest.mark.parametrize("which", ["bpe", "sp", "llama_hf"])
def test_incremental_decoder_with_context(which, bpe, sp, llama_hf_dir):
    tokenizer = {"bpe": bpe, "sp": sp}.get(which) or Tokenizer(llama_hf_dir)
    ids = tokenizer.encode("The quick brown fox 🦊 jumps over 你好 the lazy dog", bos=False).tolist()
    # prompts of two or more tokens (decode() treats a lone token as a continuation) that end on a character
    for split in range(2, len(ids)):
        prompt, generated = ids[:split], ids[split:]
        if tokenizer.decode(prompt).endswith("\ufffd"):
            continue
        expected = tokenizer.decode(ids)[len(tokenizer.decode(prompt)) :]
        assert "".join(streamed(tokenizer, generated, context=prompt)) == expected
        assert "".join(tokenizer.decode_stream(generated, context=torch.tensor(prompt))) == expected


def test_invalid_bytes_are_flushed(bpe):
    """An incomplete character at the end of a stream is held back until flush, then emitted as decode() has it."""
    ids = bpe.encode("ok 🦊").tolist()[:-1]  # drop the emoji's last byte-level token
    decoder = IncrementalDecoder(bpe)
    shown = "".join(decoder.add(i) for i in ids)
    assert shown.startswith("ok") and "\ufffd" not in shown
    rest = decoder.flush()
    assert rest.endswith("\ufffd") and shown + rest == bpe.decode(ids)


def test_matches_transformers(bpe_tokenizer_json, llama_hf_dir, sentencepiece_model, tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    bpe = Tokenizer(make_checkpoint(tmp_path / "bpe", bpe_tokenizer_json))
    theirs = PreTrainedTokenizerFast(tokenizer_file=str(bpe_tokenizer_json))
    llama = Tokenizer(llama_hf_dir)
    assert llama.use_bos is True and llama.bos_id == 1 and llama.eos_id == 2
    theirs_llama = AutoTokenizer.from_pretrained(str(llama_hf_dir))
    sp = Tokenizer(make_checkpoint(tmp_path / "sp", sentencepiece_model))
    for text in TEXTS:
        assert bpe.encode(text).tolist() == theirs.encode(text, add_special_tokens=False)
        assert llama.encode(text).tolist() == theirs_llama.encode(text)
        assert sp.encode(text, bos=True).tolist() == theirs_llama.encode(text)


def test_missing_tokenizer(tmp_path):
    for folder in (tmp_path / "empty", tmp_path / "does-not-exist"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(FileNotFoundError) as info:
            Tokenizer(folder)
        message = str(info.value)
        assert str(folder) in message and "tokenizer.json" in message and "tokenizer.model" in message
        assert "\n" not in message


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer.model"])
def test_corrupt_tokenizer(name, tmp_path):
    (tmp_path / name).write_text('{"version": "1.0", "model": ', encoding="utf-8")
    with pytest.raises(ValueError, match=f"Could not read tokenizer .*{name}") as info:
        Tokenizer(tmp_path)
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)


def test_corrupt_tokenizer_config(bpe_tokenizer_json, tmp_path):
    folder = make_checkpoint(tmp_path, bpe_tokenizer_json)
    (folder / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="Could not read .*tokenizer_config.json"):
        Tokenizer(folder)

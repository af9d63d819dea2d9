"""Tiny random checkpoints for generation tests: an HF model of a family, saved and converted with our converter.

Each folder holds the HF files (config.json, model.safetensors), a byte-level BPE tokenizer trained on the
spot, and what `convert_to_litgpt` writes (lit_model.pth, model_config.yaml). Folders are built once per
test session and shared (see `checkpoint`).
"""

import json
from pathlib import Path
from typing import Dict

import pytest

VOCAB_SIZE = 320  # the models' vocabulary; the tokenizer uses the first ~300 ids
SPECIAL_TOKENS = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]
CORPUS = """\
The quick brown fox jumps over the lazy dog. Llamas eat grass, hay and leaves.
What food do llamas eat? They graze on grass and browse on shrubs all day long.
Hello there, how are you today? I am fine, thank you for asking, my friend.
Tokens stream one at a time; the reply is printed piece by piece as it arrives.
"""
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def write_tokenizer(folder: Path, chat_template: bool = False) -> None:
    """A byte-level BPE tokenizer.json with <s>=0, </s>=1, and its tokenizer_config.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(CORPUS.splitlines() * 5, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    config: Dict = {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}
    if chat_template:
        config["chat_template"] = CHATML_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def hf_config(family: str, seed: int = 0):
    """A tiny transformers config of `family` (llama, gpt_neox, gemma); `seed` varies the depth for draft models."""
    import transformers

    common = dict(vocab_size=VOCAB_SIZE, max_position_embeddings=2048, bos_token_id=0, eos_token_id=1, tie_word_embeddings=False)
    # large initial weights make the next-token distributions peaked, so greedy decoding has no near-ties
    common["initializer_range"] = 0.3
    layers = 2 if seed == 0 else 1
    if family == "llama":
        return transformers.LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, **common
        )
    if family == "gpt_neox":
        return transformers.GPTNeoXConfig(
            hidden_size=32, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4, rotary_pct=0.25,
            use_parallel_residual=True, hidden_act="gelu", **common,
        )
    if family == "gemma":
        return transformers.GemmaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=1,
            head_dim=8, hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh", **common,
        )
    raise ValueError(family)


def build_checkpoint(folder: Path, family: str, seed: int = 0, chat_template: bool = False) -> Path:
    """Save a random HF model of `family` with the tiny tokenizer to `folder` and convert it; returns `folder`."""
    import torch
    import transformers

    from litgpt.convert.hf_to_lit import convert_to_litgpt

    if (folder / "lit_model.pth").is_file():
        return folder
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(hf_config(family, seed)).eval()
    model.save_pretrained(str(folder))
    write_tokenizer(folder, chat_template)
    convert_to_litgpt(folder)
    return folder


def hf_model(folder: Path):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype="float32").eval()


def checkpoint(tmp_path_factory, name: str, family: str, seed: int = 0, chat_template: bool = False) -> Path:
    """The session's shared folder `name`, built on first use."""
    return build_checkpoint(tmp_path_factory.getbasetemp() / "tiny-checkpoints" / name, family, seed, chat_template)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not stall when other processes load the CPU)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

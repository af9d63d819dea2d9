"""Small parts of LitGPT 0.5.13's public behaviour that users meet: special-token strings in the text, tiny
heads, unnamed configs, stop-token types, a sloppy generation_config.json, and error phrases people search for."""

import json
import math
import shutil
from types import SimpleNamespace

import pytest
import torch

from litgpt import GPT, Config, Tokenizer
from litgpt import prompts

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"


def bpe_folder(tmp_path, bpe_tokenizer_json, **tokenizer_config):
    folder = tmp_path / "tok"
    folder.mkdir(exist_ok=True)
    shutil.copy(bpe_tokenizer_json, folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return folder


# Tokenizer: the text may carry the BOS/EOS strings


@pytest.mark.parametrize("use_bos", [True, False])
def test_special_token_strings_in_the_text_follow_bos_and_eos(tmp_path, bpe_tokenizer_json, use_bos):
    tokenizer = Tokenizer(bpe_folder(tmp_path, bpe_tokenizer_json, bos_token=BOS, eos_token=EOS, add_bos_token=use_bos))
    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    hello = tokenizer.encode("hello", bos=False).tolist()
    assert bos not in hello and eos not in hello
    for text in ("hello", f"{BOS}hello", f"hello{EOS}", f"{BOS}hello{EOS}"):
        assert tokenizer.encode(text, bos=False).tolist() == hello, text
        assert tokenizer.encode(text, bos=True).tolist() == [bos] + hello, text
        assert tokenizer.encode(text, bos=False, eos=True).tolist() == hello + [eos], text
        assert tokenizer.encode(text, bos=True, eos=True).tolist() == [bos] + hello + [eos], text
        assert tokenizer.encode(text).tolist() == [bos] * use_bos + hello, text  # bos=None: the tokenizer's use_bos
    # only the ends are touched: the strings inside a text stay its tokens
    a, b = tokenizer.encode("a", bos=False).tolist(), tokenizer.encode("b", bos=False).tolist()
    assert tokenizer.encode(f"a{EOS}{BOS}b", bos=False).tolist() == a + [eos, bos] + b


def test_instruction_data_whose_response_ends_in_eos_gets_one_eos(tmp_path, bpe_tokenizer_json):
    from litgpt.data import SFTDataset

    tokenizer = Tokenizer(bpe_folder(tmp_path, bpe_tokenizer_json, bos_token=BOS, eos_token=EOS, add_bos_token=True))
    style = prompts.PromptStyle.from_name("alpaca")
    exported = SFTDataset([{"instruction": "Say hi.", "output": f"hi{EOS}"}], tokenizer, style)[0]["input_ids"].tolist()
    plain = SFTDataset([{"instruction": "Say hi.", "output": "hi"}], tokenizer, style)[0]["input_ids"].tolist()
    assert exported == plain and plain[-1] == tokenizer.eos_id and plain[-2] != tokenizer.eos_id


# A generation_config.json with a trailing comma


def test_generation_config_with_trailing_commas_is_read_with_a_warning(tmp_path, bpe_tokenizer_json, capsys):
    folder = bpe_folder(tmp_path, bpe_tokenizer_json)  # no token names: the ids come from generation_config.json
    (folder / "generation_config.json").write_text('{\n  "bos_token_id": 0,\n  "eos_token_id": [1, 0,],\n  "note": "a,}",\n}\n')
    tokenizer = Tokenizer(folder)
    assert (tokenizer.bos_id, tokenizer.eos_id) == (0, 1)
    warning = capsys.readouterr().err.strip()
    assert warning.startswith("Warning: ") and "generation_config.json" in warning and "\n" not in warning
    # other syntax errors, and the same slip in other files, still fail with the file's name
    (folder / "generation_config.json").write_text('{"bos_token_id": 0 "eos_token_id": 1}')
    with pytest.raises(ValueError, match="Could not read .*generation_config.json"):
        Tokenizer(folder)
    (folder / "generation_config.json").unlink()
    (folder / "tokenizer_config.json").write_text('{"eos_token": "<|end_of_text|>",}')
    with pytest.raises(ValueError, match="Could not read .*tokenizer_config.json"):
        Tokenizer(folder)


# GPT with a head so small that RoPE covers one element


def tiny_head_model(**kwargs) -> GPT:
    config = Config(n_embd=8, n_head=2, n_layer=2, vocab_size=40, padded_vocab_size=40, block_size=32, **kwargs)
    assert config.rope_n_elem == 1
    torch.manual_seed(0)
    return GPT(config).eval()


@pytest.mark.parametrize("kwargs", [{}, {"n_query_groups": 1, "norm_class_name": "RMSNorm", "mlp_class_name": "LLaMAMLP", "intermediate_size": 16}])
def test_tiny_head_generates_with_the_kv_cache(kwargs):
    model = tiny_head_model(**kwargs)
    prompt = torch.tensor([[3, 14, 15, 9, 2]])
    with torch.no_grad():
        # greedy decoding by recomputing the whole sequence, then the same through the KV cache
        expected = prompt
        for _ in range(6):
            expected = torch.cat((expected, model(expected)[:, -1:].argmax(-1)), dim=1)
        model.set_kv_cache(batch_size=1)
        T = prompt.size(1)
        logits = model(prompt, input_pos=torch.arange(T), input_pos_maxp1=T)
        cached = prompt
        for pos in range(T, T + 6):
            token = logits[:, -1:].argmax(-1)
            cached = torch.cat((cached, token), dim=1)
            logits = model(token, input_pos=torch.tensor([pos]), input_pos_maxp1=pos + 1)
        assert torch.equal(cached, expected)
        model.clear_kv_cache()
        assert torch.allclose(model(cached)[:, -1], logits[:, -1], atol=1e-5)


def test_tiny_head_attention_is_litgpts():
    """LitGPT (like Hugging Face at the time) broadcasts the single rotary element to two equal copies."""
    model = tiny_head_model()
    attn = model.transformer.h[0].attn
    torch.manual_seed(1)
    x = torch.randn(1, 5, 8)
    cos, sin = model.cos[:5].unsqueeze(0), model.sin[:5].unsqueeze(0)
    with torch.no_grad():
        got = attn(x, cos, sin)
        q, k, v = (t.view(1, 5, 2, 4).transpose(1, 2) for t in attn.qkv(x).split(8, dim=-1))
        angle = torch.arange(5.0).view(1, 1, 5, 1)  # theta = 1 for the one rotary element

        def two_copies(t):
            rotated = t[..., :1] * (torch.cos(angle) - torch.sin(angle))
            return torch.cat((rotated, rotated, t[..., 1:]), dim=-1)  # head_size + 1 wide

        scores = two_copies(q) @ two_copies(k).transpose(-2, -1) / math.sqrt(4)
        scores = scores.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
        expected = attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(1, 5, 8))
    assert torch.allclose(got, expected, atol=1e-6)


# Config(name=None)


@pytest.mark.parametrize("name", [None, 7])
def test_config_accepts_a_name_that_is_not_a_string(name):
    config = Config(name=name, n_embd=8, n_head=2, n_layer=1, vocab_size=16, padded_vocab_size=16, block_size=8)
    assert config.name == name
    assert GPT(config)(torch.tensor([[1, 2, 3]])).shape == (1, 3, 16)
    assert Config(name=None, hf_config={"name": "from-hf"}).name == "from-hf"


# PromptStyle.stop_tokens


def test_stop_tokens_are_a_tuple_of_lists(tmp_path, bpe_tokenizer_json):
    tokenizer = Tokenizer(bpe_folder(tmp_path, bpe_tokenizer_json, eos_token=EOS))
    stops = prompts.Phi1().stop_tokens(tokenizer)
    assert type(stops) is tuple and stops and all(type(s) is list for s in stops)
    assert stops[0] == [tokenizer.eos_id]
    assert prompts.Default().stop_tokens(tokenizer) == ([tokenizer.eos_id],)


def test_phi3_stops_on_end_with_any_tokenizer_that_has_the_ids(tmp_path, bpe_tokenizer_json):
    # a tokenizer object with only the ids (as in LitGPT's own tests): no lookup of "<|end|>", no error
    assert prompts.Phi3().stop_tokens(SimpleNamespace(bos_id=0, eos_id=1)) == ([1],)
    # one whose vocabulary has "<|end|>" stops on it too, as Hugging Face's generation config does
    folder = tmp_path / "phi3"
    folder.mkdir()
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer.from_file(str(bpe_tokenizer_json))
    hf.add_special_tokens(["<|end|>"])
    hf.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": EOS}))
    tokenizer = Tokenizer(folder)
    assert prompts.Phi3().stop_tokens(tokenizer) == ([tokenizer.eos_id], [tokenizer.token_to_id("<|end|>")])


# Error phrases users search for


def test_unknown_config_name_says_it_is_not_a_supported_config_name(tmp_path):
    with pytest.raises(ValueError, match="'no-such-model' is not a supported config name"):
        Config.from_name("no-such-model")
    with pytest.raises(FileNotFoundError, match="is not a supported config name"):
        Config.from_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="The checkpoint directory does not exist"):
        Tokenizer(tmp_path / "missing")


@pytest.mark.parametrize("precision", ["bf16", "16", "32", "64-true"])
def test_lightnings_short_precision_names_generate(tiny_checkpoint, precision):
    """LitGPT hands --precision to Lightning, which also takes "bf16", "16" (the mixed ones) and "64-true"."""
    from cli_checks import litgpt

    result = litgpt("generate", str(tiny_checkpoint), "--prompt", "Hi", "--max_new_tokens", "3", "--precision", precision)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_default_precision_is_fp16_on_a_gpu_without_bf16_and_fp32_on_the_cpu():
    from litgpt.checkpoint import precision_dtype

    assert precision_dtype(None, torch.device("cpu")) == torch.float32
    # without a GPU torch says bf16 is unsupported: the choice LitGPT makes for a T4 or a V100
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert precision_dtype(None, torch.device("cuda")) == expected


def test_loading_a_model_lets_fp32_products_use_tf32_as_litgpt(tiny_checkpoint):
    import subprocess
    import sys

    code = ("import sys, torch; from litgpt.__main__ import main; "
            "main(['generate', sys.argv[1], '--max_new_tokens', '2']); "
            "print('precision', torch.get_float32_matmul_precision())")
    result = subprocess.run([sys.executable, "-c", code, str(tiny_checkpoint)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("precision high"), result.stdout[-500:]
    code = ("import torch; from litgpt.model import Block; from litgpt.train.loop import make_fabric; "
            "make_fabric(1, 1, '32-true', [], Block); print('precision', torch.get_float32_matmul_precision())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().endswith("precision high"), result.stdout[-500:] + result.stderr[-1000:]

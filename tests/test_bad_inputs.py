"""Bad inputs end in one line naming the input, a non-zero exit and no output: instruction records of the wrong
type, temperatures that overflow or are not numbers, chat templates that raise or break out of the sandbox."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from litgpt.engine.sampling import probabilities, sample
from litgpt.prompts import ChatTemplate

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"instruction": "Say hello.", "input": "", "output": "Hello world!"}


def litgpt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LITGPT_DEBUG"}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "litgpt", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def the_error(result: subprocess.CompletedProcess) -> str:
    """The one line a failed command wrote to stderr."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# instruction records


@pytest.mark.parametrize(
    "bad, expected",
    [
        ({"instruction": "x", "input": "", "output": None}, "data.json record 2: the field 'output' must be a string, got null"),
        ({"instruction": 5, "input": "", "output": "y"}, "data.json record 2: the field 'instruction' must be a string, got 5"),
        ({"instruction": "x", "input": ["a"], "output": "y"}, "data.json record 2: the field 'input' must be a string, got [\"a\"]"),
    ],
)
def test_a_badly_typed_json_record_is_one_line(tmp_path, tiny_checkpoint, bad, expected):
    (tmp_path / "data.json").write_text(json.dumps([GOOD, GOOD, bad, GOOD]))
    result = litgpt("finetune_lora", str(tiny_checkpoint), "--data", "JSON", "--data.json_path", "data.json",
                    "--data.val_split_fraction", "0.5", "--precision", "32-true", "--out_dir", "out", cwd=tmp_path)
    assert the_error(result) == f"litgpt finetune_lora: error: {expected}; fix or remove the record"
    assert not (tmp_path / "out").exists()


def test_a_local_alpaca_file_is_checked_before_any_work(tmp_path, tiny_checkpoint):
    (tmp_path / "alpaca").mkdir()
    (tmp_path / "alpaca" / "alpaca_data_cleaned_archive.json").write_text(json.dumps([GOOD, {"instruction": "x", "output": None}]))
    result = litgpt("finetune_lora", str(tiny_checkpoint), "--data", "Alpaca", "--data.download_dir", "alpaca",
                    "--precision", "32-true", "--out_dir", "out", cwd=tmp_path)
    assert the_error(result).endswith("alpaca/alpaca_data_cleaned_archive.json record 1: the field 'output' must be a string, "
                                      "got null; fix or remove the record")
    assert not (tmp_path / "out").exists()


def test_null_input_is_no_input(tmp_path, tiny_checkpoint):
    from litgpt.data import JSON
    from litgpt.tokenizer import Tokenizer

    (tmp_path / "data.json").write_text(json.dumps([GOOD, {**GOOD, "input": None}]))
    data = JSON(json_path=tmp_path / "data.json", val_split_fraction=0.5, num_workers=0)
    data.connect(Tokenizer(tiny_checkpoint))
    data.check()
    data.setup()
    without = data.dataset([{**GOOD, "input": ""}])[0]["input_ids"]
    assert all(torch.equal(data.dataset([r])[0]["input_ids"], without) for r in (data.train_dataset.data + data.test_dataset.data))


def test_a_bad_conversation_turn_names_the_file_and_row():
    from litgpt.data.deita import conversation_records

    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    bad = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None}]}
    assert conversation_records([good], multiturn=True, source="train.json")[0]["output"] == "Hello"
    for row in (bad, {"conversations": ["Hi", 5]}, {"conversations": 7}):
        with pytest.raises(ValueError, match=r"^train\.json record 1: every turn of 'messages'/'conversations' must be a string"):
            conversation_records([good, row], multiturn=False, source="train.json")


# ---------------------------------------------------------------------------------------------------------------
# temperatures


@pytest.mark.parametrize("temperature", [1e-40, 1e-46, 1e-37, 1e-10])  # 300 / 1e-37 overflows float32
def test_a_tiny_temperature_samples_the_argmax(temperature):
    logits = torch.randn(4, 64, generator=torch.Generator().manual_seed(0)) * 50
    logits[0, :2] = 300.0  # a tie at the top: each keeps half
    probs = probabilities(logits, temperature=temperature)
    assert torch.isfinite(probs).all()
    assert torch.equal(probs[1:].argmax(-1), logits[1:].argmax(-1)) and torch.allclose(probs[1:].max(-1).values, torch.ones(3))
    assert torch.equal(sample(logits[1:], temperature=temperature), logits[1:].argmax(-1))
    if temperature >= 1e-38:  # sampled, not greedy: the tie stays a tie
        assert torch.allclose(probs[0, :2], torch.tensor([0.5, 0.5]))


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -1.0])
def test_a_temperature_that_is_no_number_is_refused(temperature):
    with pytest.raises(ValueError, match=r"^temperature must be a finite number >= 0, got"):
        sample(torch.randn(1, 8), temperature=temperature)
    with pytest.raises(ValueError, match=r"^temperature must be a finite number >= 0, got"):
        probabilities(torch.randn(1, 8), temperature=temperature)


def test_generate_and_chat_with_a_tiny_temperature(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    from litgpt.chat import chat

    args = ("generate", str(tiny_checkpoint), "--prompt", "Hello", "--max_new_tokens", "8")
    tiny, greedy = (litgpt(*args, "--temperature", t, cwd=tmp_path) for t in ("1e-40", "0"))
    assert tiny.returncode == 0 and tiny.stdout == greedy.stdout and tiny.stdout.strip()

    (tmp_path / "nan.yaml").write_text("temperature: .nan\n")
    result = litgpt(*args, "--config", "nan.yaml", cwd=tmp_path)
    assert the_error(result) == "litgpt generate: error: temperature must be a finite number >= 0, got nan"

    replies = []
    for temperature in (1e-40, 0.0):
        monkeypatch.setattr(sys, "stdin", io.StringIO("Hello\n\n"))
        chat(tiny_checkpoint, max_new_tokens=8, temperature=temperature)
        replies.append(capsys.readouterr().out)
    assert replies[0] == replies[1] and ">> Reply: " in replies[0]


# ---------------------------------------------------------------------------------------------------------------
# chat templates

RAISES = "{{ raise_exception('Conversation roles must alternate user/assistant') }}"
SANDBOXED = "{{ messages.__class__.__mro__[1].__subclasses__() }}"


def with_template(folder: Path, template: str, jinja_file: bool = False) -> Path:
    if jinja_file:
        (folder / "chat_template.jinja").write_text(template)
    else:
        config = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template}))
    return folder


@pytest.mark.parametrize(
    "template, jinja_file, message",
    [
        (RAISES, False, "tokenizer_config.json failed: Conversation roles must alternate user/assistant"),
        (SANDBOXED, False, "tokenizer_config.json failed: access to attribute '__class__' of 'list' object is unsafe."),
        (SANDBOXED, True, "chat_template.jinja failed: access to attribute '__class__' of 'list' object is unsafe."),
        ("{% if messages %}{{ x }", False, "tokenizer_config.json does not parse: unexpected '}'"),
    ],
)
def test_a_failing_chat_template_names_its_file(tmp_path, tiny_checkpoint, template, jinja_file, message):
    folder = with_template(tiny_checkpoint, template, jinja_file)
    expected = f"The chat template in {folder / message}"
    with pytest.raises(ValueError) as error:
        ChatTemplate.from_checkpoint(folder).apply("Hi")
    assert str(error.value) == expected


def test_a_failing_chat_template_in_generate_chat_and_serve(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    from litgpt.chat import chat
    from litgpt.serve_api import Prompter, RequestError, Settings
    from litgpt.tokenizer import Tokenizer

    folder = with_template(tiny_checkpoint, SANDBOXED)
    expected = f"The chat template in {folder / 'tokenizer_config.json'} failed: access to attribute '__class__' of 'list' object is unsafe."
    result = litgpt("generate", str(folder), "--prompt", "Hi", "--max_new_tokens", "2", cwd=tmp_path)
    assert the_error(result) == f"litgpt generate: error: {expected}"

    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi\n\n"))
    chat(folder, max_new_tokens=2)  # the conversation goes on: the next prompt may lay out
    assert [line for line in capsys.readouterr().err.splitlines() if line.strip()] == [expected]

    prompter = Prompter(Tokenizer(folder), ChatTemplate.from_checkpoint(folder), context_length=64)
    with pytest.raises(RequestError) as error:
        prompter.encode("Hi", Settings(max_new_tokens=2, temperature=0.0, top_k=1, top_p=1.0), "prompt", "max_new_tokens")
    assert error.value.status == 400 and expected in error.value.message

import io
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest
import torch
from generate.tiny import checkpoint, one_thread  # noqa: F401 (an autouse fixture)

from litgpt.api import LLM
from litgpt.chat import Conversation, chat, read_prompt

USER = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    """A tiny llama whose tokenizer_config.json has a ChatML chat template."""
    return checkpoint(tmp_path_factory, "tiny-random-llama-chatml", "llama", chat_template=True)


@pytest.fixture
def llm(chat_dir):
    return LLM.load(chat_dir)


def spy_on_replies(monkeypatch):
    """Records (rendered prompt, messages after the reply) for every turn."""
    seen = []
    original = Conversation.reply

    def reply(self, prompt, write):
        n = original(self, prompt, write)
        seen.append((self.last_prompt, [dict(m) for m in self.messages]))
        return n

    monkeypatch.setattr(Conversation, "reply", reply)
    return seen


def test_chat_keeps_the_history(chat_dir, monkeypatch, capsys):
    seen = spy_on_replies(monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.StringIO("What food do llamas eat?\nAnd hay?\n\nnever read\n"))
    chat(chat_dir, max_new_tokens=8, temperature=0.0)
    out, err = capsys.readouterr()
    assert out.startswith("Now chatting with tiny-random-llama-chatml.\nTo exit, press 'Enter' on an empty prompt.\n\n")
    assert out.count(">> Prompt: ") == 3 and out.count(">> Reply: ") == 2
    assert err.count("\nTime for inference: ") == 2 and " tokens/sec, " in err
    (first, after_first), (second, after_second) = seen
    assert first == USER.format("What food do llamas eat?")
    reply = after_first[1]["content"]
    assert after_first[1]["role"] == "assistant" and f">> Reply: {reply}\n" in out
    # the second turn's prompt holds the whole first exchange
    assert second == first + reply + "<|im_end|>\n" + USER.format("And hay?")
    assert len(after_second) == 4


def test_multiline_prompts_end_at_submit_in_a_real_chat(chat_dir, llm):
    """`litgpt chat --multiline true` fed through stdin: blank lines stay in a prompt, a line !submit sends it
    (any case), !quit as a prompt's first line ends the chat, as in LitGPT."""
    prompts = ["line one\n\n  line two", "second"]
    stdin = "line one\n\n  line two\n!submit\nsecond\n  !SUBMIT \n!Quit\nnever sent\n!submit\n"
    result = subprocess.run(
        [sys.executable, "-m", "litgpt", "chat", str(chat_dir), "--multiline", "true", "--max_new_tokens", "3",
         "--temperature", "0"],
        input=stdin, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "send it with a line that says !submit" in result.stdout and "!quit or !exit" in result.stdout
    assert result.stdout.count(">> Reply: ") == 2, result.stdout  # an empty line would have sent three prompts
    conversation = Conversation(llm.model, llm.tokenizer, llm.prompt_style, max_new_tokens=3, sampling={"temperature": 0.0})
    for prompt in prompts:  # the same conversation in this process: the prompts were sent whole
        pieces = []
        conversation.reply(prompt, write=pieces.append)
        assert f">> Reply: {''.join(pieces)}\n" in result.stdout


def test_read_prompt(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("  hi  \n!quit\n"))
    assert read_prompt() == "hi"
    assert read_prompt() is None  # !quit
    assert read_prompt() is None  # end of input
    monkeypatch.setattr(sys, "stdin", io.StringIO("a\n\n b\n\n!Submit\n!submit\nc\n!EXIT\nc"))
    assert read_prompt(multiline=True) == "a\n\n b"
    assert read_prompt(multiline=True) is None  # an empty prompt ends the chat
    assert read_prompt(multiline=True) == "c"  # !exit after lines sends them, as LitGPT's chat does
    assert read_prompt(multiline=True) == "c"  # end of input sends the last prompt
    assert read_prompt(multiline=True) is None


def test_second_turn_reuses_the_cache_and_matches_a_fresh_start(llm, monkeypatch):
    import litgpt.engine.batcher as core

    starts = []
    original = core.generate_tokens

    def generate_tokens(*args, cached=0, **kwargs):
        starts.append(cached)
        return original(*args, cached=cached, **kwargs)

    monkeypatch.setattr(core, "generate_tokens", generate_tokens)
    sampling = dict(temperature=0.0)
    conversation = Conversation(llm.model, llm.tokenizer, llm.prompt_style, max_new_tokens=12, sampling=sampling)
    conversation.reply("What food do llamas eat?", write=lambda text: None)
    conversation.reply("And hay?", write=lambda text: None)
    assert starts[0] == 0 and starts[1] > len(llm.tokenizer.encode(USER.format("What food do llamas eat?")))
    # the same history from an empty cache gives the same reply
    llm.model.clear_kv_cache()
    fresh = Conversation(llm.model, llm.tokenizer, llm.prompt_style, max_new_tokens=12, sampling=sampling)
    fresh.messages = conversation.messages[:2]
    fresh.reply("And hay?", write=lambda text: None)
    assert fresh.messages == conversation.messages


def test_oldest_turns_are_dropped_when_the_context_is_full(llm):
    llm.model.max_seq_length = 60
    conversation = Conversation(llm.model, llm.tokenizer, llm.prompt_style, max_new_tokens=8, sampling=dict(temperature=0.0))
    for i in range(4):
        conversation.reply(f"Question {i}: what food do llamas eat?", write=lambda text: None)
        assert len(llm.tokenizer.encode(conversation.last_prompt)) + 8 <= 60
    assert "Question 3" in conversation.last_prompt and "Question 0" not in conversation.last_prompt
    messages = list(conversation.messages)
    with pytest.raises(ValueError, match="does not fit"):
        conversation.reply("llamas " * 60, write=lambda text: None)
    assert conversation.messages == messages


def test_ctrl_c_stops_the_reply_only(llm):
    conversation = Conversation(llm.model, llm.tokenizer, llm.prompt_style, max_new_tokens=30, sampling=dict(temperature=0.0))
    pieces = []

    def write(text):
        pieces.append(text)
        if len(pieces) == 3:
            raise KeyboardInterrupt

    assert conversation.reply("What food do llamas eat?", write) >= 3
    assert conversation.messages[-1]["content"].startswith("".join(pieces))
    assert conversation.reply("And hay?", write=lambda text: None) > 0


def read_until(fd, pattern: bytes, timeout: float = 60.0) -> bytes:
    buffer = b""
    deadline = time.time() + timeout
    while pattern not in buffer:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.time()))
        if not ready:
            raise AssertionError(f"no {pattern!r} within {timeout}s; got {buffer[-500:]!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        buffer += chunk
    assert pattern in buffer, buffer[-500:]
    return buffer


def test_chat_in_a_terminal(chat_dir):
    """A real pseudo-terminal: prompt, streamed reply, Ctrl-C (SIGINT) in a long reply, empty prompt to exit."""
    code = (
        "from litgpt import prompts\n"
        "prompts.PromptStyle.stop_tokens = lambda self, tokenizer: ()  # so that the long reply cannot end early\n"
        "from litgpt.chat import chat\n"
        f"chat({str(chat_dir)!r}, max_new_tokens=1500, temperature=0.0)\n"
    )
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=slave, stdout=slave, stderr=slave, start_new_session=True, close_fds=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    os.close(slave)
    try:
        assert b"Now chatting with" in read_until(master, b">> Prompt: ")
        os.write(master, "What food do llamas eat?\n".encode())
        read_until(master, b">> Reply: ")
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        after = read_until(master, b">> Prompt: ")
        assert b"Time for inference: " in after
        tokens = int(after.split(b" tokens/sec, ")[1].split(b" tokens")[0])
        assert 0 < tokens < 1500  # stopped early
        os.write(master, b"\n")
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)


def test_bad_arguments_are_one_line_errors(chat_dir, tmp_path, monkeypatch, capsys):
    import litgpt.__main__ as cli

    monkeypatch.setattr(cli, "COMMANDS", {"chat": "litgpt.chat:chat"})
    with pytest.raises(SystemExit) as exit:
        cli.main(["chat", str(tmp_path / "missing")])
    assert exit.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("litgpt chat: error:") and len(err.splitlines()) == 1
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            cli.main(["chat", str(chat_dir), "--quantize", "bnb.nf4"])
        err = capsys.readouterr().err.strip()
        assert "needs a CUDA GPU" in err and len(err.splitlines()) == 1

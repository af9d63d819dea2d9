import pytest
import torch

import litgpt.__main__ as cli
from litgpt.checkpoint import load_model
from litgpt.generate.cli import generate
from litgpt.engine.core import compiled_decode_step, ensure_kv_cache
from litgpt.engine.batcher import generate_tokens

COMMANDS = {
    "generate": "litgpt.generate.cli:generate",
    "generate_full": "litgpt.generate.cli:generate_full",
    "generate_speculatively": "litgpt.generate.speculative:generate_speculatively",
}


@pytest.fixture
def commands(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", COMMANDS)


def test_generate_prints_the_completion_and_stats(llama_dir, capsys):
    generate(llama_dir, "What food do llamas eat?", max_new_tokens=8, temperature=0.0, num_samples=2)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("What food do llamas eat?") and lines[0] == lines[1]
    assert "Time for inference 1: " in err and "Time for inference 2: " in err and " tokens/sec, 8 tokens" in err


def test_cli_runs_generate_and_reports_bad_input_in_one_line(llama_dir, draft_llama_dir, commands, capsys):
    cli.main(["generate_full", str(llama_dir), "--prompt", "Hello", "--max_new_tokens", "4", "--top_k", "1"])
    assert capsys.readouterr().out.startswith("Hello")
    cli.main([
        "generate_speculatively", str(draft_llama_dir), str(llama_dir), "--prompt", "Hello",
        "--max_new_tokens", "6", "--speculative_k", "2", "--temperature", "0",
    ])
    out, err = capsys.readouterr()
    assert out.startswith("Hello") and "acceptance rate" in err
    too_long = "The prompt (14 tokens) plus max_new_tokens (5000) do not fit the model's context of 2048 tokens"
    bad = [
        (["generate", str(llama_dir), "--max_new_tokens", "0"], "max_new_tokens must be"),
        (["generate", str(llama_dir), "--top_p", "2"], "top_p must be"),
        (["generate", str(llama_dir), "--max_new_tokens", "5000"], too_long),
        (["generate_speculatively", str(draft_llama_dir), str(llama_dir), "--max_new_tokens", "5000"], too_long),
    ]
    if not torch.cuda.is_available():
        bad.append((["generate", str(llama_dir), "--quantize", "bnb.nf4"], "needs a CUDA GPU"))
    for argv, message in bad:
        with pytest.raises(SystemExit) as exit:
            cli.main(argv)
        err = capsys.readouterr().err.strip()
        assert exit.value.code == 1 and err.startswith(f"litgpt {argv[0]}: error:") and len(err.splitlines()) == 1, err
        assert message in err


def test_compiled_step_decodes_the_same(llama_dir):
    model = load_model(llama_dir)
    ensure_kv_cache(model, 1, 40)
    prompt = torch.tensor([0, 5, 17, 42])
    expected = list(generate_tokens(model, prompt, 12, temperature=0.0))
    # the eager backend checks the wiring without a C++ compiler run (inductor takes a minute on a CPU)
    step = compiled_decode_step(backend="eager")
    assert list(generate_tokens(model, prompt, 12, temperature=0.0, step=step)) == expected


def test_every_generation_command_takes_its_flags_from_one_table(llama_dir, capsys):
    # jsonargparse reads the signature and docstring that `command` builds from FLAGS: names, types, defaults, help
    import inspect

    from litgpt.chat import chat
    from litgpt.generate.flags import FLAGS, command
    from litgpt.generate.sequentially import generate_sequentially
    from litgpt.generate.speculative import generate_speculatively
    from litgpt.generate.tp import generate_tp

    top_k_help = f"{FLAGS['top_k'][2]} (type: Optional[int], default: 50)"
    for name in ("generate", "generate_sequentially", "generate_tp", "generate_speculatively", "chat"):
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        assert top_k_help in " ".join(capsys.readouterr().out.split()), name
    for fn in (generate, generate_sequentially, generate_tp, generate_speculatively, chat):
        assert inspect.signature(fn).parameters["top_k"].default == 50
        assert inspect.signature(fn).parameters["temperature"].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(inspect.signature(generate_tp).parameters)[-2:] == ["accelerator", "devices"]
    assert "seed: The random seed (the same on every rank" in generate_tp.__doc__
    with pytest.raises(TypeError, match="max_new_token"):
        generate(llama_dir, "Hello", max_new_token=3)  # a misspelt flag, as a Python call
    with pytest.raises(TypeError, match="not named"):
        command(("prompt",), seed="help for a flag the command does not take")

import pytest
import torch

import litgpt.__main__ as cli
from litgpt.checkpoint import load_model
from litgpt.generate.cli import generate, generate_full
from litgpt.engine.core import compiled_decode_step, ensure_kv_cache, generate_tokens

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
    assert generate_full is generate


def test_cli_runs_generate_and_reports_bad_input_in_one_line(llama_dir, draft_llama_dir, commands, capsys):
    cli.main(["generate_full", str(llama_dir), "--prompt", "Hello", "--max_new_tokens", "4", "--top_k", "1"])
    assert capsys.readouterr().out.startswith("Hello")
    cli.main([
        "generate_speculatively", str(draft_llama_dir), str(llama_dir), "--prompt", "Hello",
        "--max_new_tokens", "6", "--speculative_k", "2", "--temperature", "0",
    ])
    out, err = capsys.readouterr()
    assert out.startswith("Hello") and "acceptance rate" in err
    bad = [["generate", str(llama_dir), "--max_new_tokens", "0"], ["generate", str(llama_dir), "--top_p", "2"]]
    if not torch.cuda.is_available():
        bad.append(["generate", str(llama_dir), "--quantize", "bnb.nf4"])
    for argv in bad:
        with pytest.raises(SystemExit) as exit:
            cli.main(argv)
        err = capsys.readouterr().err.strip()
        assert exit.value.code == 1 and err.startswith("litgpt generate: error:") and len(err.splitlines()) == 1, err


def test_compiled_step_decodes_the_same(llama_dir):
    model = load_model(llama_dir)
    ensure_kv_cache(model, 1, 40)
    prompt = torch.tensor([0, 5, 17, 42])
    expected = list(generate_tokens(model, prompt, 12, temperature=0.0))
    # the eager backend checks the wiring without a C++ compiler run (inductor takes a minute on a CPU)
    step = compiled_decode_step(backend="eager")
    assert list(generate_tokens(model, prompt, 12, temperature=0.0, step=step)) == expected

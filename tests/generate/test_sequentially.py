"""`generate_sequentially`: blocks spread over several devices decode exactly as the model on one device.

Without GPUs the pieces all sit on the CPU, which still runs every hook, the per-block KV caches and the
meta-device loading; the tutorial's GPU commands run here with `--accelerator cpu`.
"""

import shlex
from pathlib import Path

import pytest
import torch

import litgpt.__main__ as cli
from litgpt.checkpoint import load_model
from litgpt.config import Config
from litgpt.generate.cli import generate
from litgpt.engine.core import compiled_decode_step, ensure_kv_cache
from litgpt.engine.batcher import generate_tokens
from litgpt.engine.sequential import layer_ranges, load_sequentially, place_sequentially
from litgpt.model import GPT

PROMPT = torch.tensor([0, 5, 17, 42, 7])
TUTORIAL = Path(__file__).resolve().parents[2] / "tutorials" / "inference-multi-gpu.md"


def greedy(model: GPT, n: int = 16, **kwargs) -> list:
    ensure_kv_cache(model, 1, PROMPT.numel() + n)
    return list(generate_tokens(model, PROMPT, n, temperature=0.0, **kwargs))


def test_layer_ranges_split_evenly_and_contiguously():
    assert layer_ranges(4, 3) == [range(0, 2), range(2, 3), range(3, 4)]
    assert layer_ranges(6, 2) == [range(0, 3), range(3, 6)]
    assert layer_ranges(2, 1) == [range(0, 2)]
    for bad in (0, 3):
        with pytest.raises(ValueError, match="Cannot split 2 layers over"):
            layer_ranges(2, bad)


def test_loaded_in_pieces_decodes_like_one_device(family_dir):
    expected = greedy(load_model(family_dir))
    model = load_sequentially(family_dir, ["cpu", "cpu"])
    assert greedy(model) == expected
    for block in model.transformer.h:  # each cache beside its block, shaped by GPT.set_kv_cache
        assert block.attn.kv_cache.k.device == block.attn.qkv.weight.device
        assert block.attn.kv_cache.k.shape[1] == model.config.n_query_groups
    # the compiled step traces through the hooks (the eager backend checks the wiring without a C++ compiler)
    assert greedy(model, step=compiled_decode_step(backend="eager")) == expected


def test_each_kv_cache_beside_its_block_without_patching_the_model():
    # two kinds of device on a CPU machine: the meta device stands in for a second GPU
    config = Config(name="tiny", block_size=16, n_layer=2, n_embd=16, n_head=2, vocab_size=32, padding_multiple=32)
    model = place_sequentially(GPT(config), ["cpu", "meta"])
    assert "set_kv_cache" not in vars(model)  # GPT.set_kv_cache itself, no method patched onto the instance
    model.set_kv_cache(batch_size=1)
    assert [block.attn.kv_cache.k.device.type for block in model.transformer.h] == ["cpu", "meta"]
    with pytest.raises(ValueError, match="placed already"):
        place_sequentially(model, ["cpu"])


def test_three_pieces_of_a_four_layer_model_decode_like_one():
    config = Config(
        name="tiny", block_size=64, n_layer=4, n_embd=32, n_head=4, n_query_groups=2, vocab_size=64, padding_multiple=64,
        norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=64, bias=False, parallel_residual=False,
    )
    torch.manual_seed(0)
    whole = GPT(config).eval()
    for p in whole.parameters():
        p.data.mul_(10)  # peaked next-token distributions: no near-ties for greedy decoding
    pieces = GPT(config).eval()
    pieces.load_state_dict(whole.state_dict())
    place_sequentially(pieces, ["cpu", "cpu", "cpu"])
    assert greedy(pieces, 24) == greedy(whole, 24)


def test_cli_prints_what_generate_prints(llama_dir, capsys):
    args = dict(prompt="What food do llamas eat?", max_new_tokens=10, temperature=0.0, num_samples=2)
    generate(llama_dir, **args)
    expected = capsys.readouterr().out
    cli.main(["generate_sequentially", str(llama_dir), "--accelerator", "cpu", "--devices", "2", "--prompt", args["prompt"],
              "--max_new_tokens", "10", "--temperature", "0", "--num_samples", "2"])
    out, err = capsys.readouterr()
    assert out == expected and err.count("Time for inference") == 2


def test_bad_device_counts_are_one_line_errors(llama_dir, capsys):
    bad = [(["--accelerator", "cpu", "--devices", "3"], "Cannot split 2 layers over 3 devices"),
           (["--accelerator", "cpu", "--devices", "0"], "devices must be a positive number")]
    if not torch.cuda.is_available():
        bad.append((["--accelerator", "cuda"], "no CUDA GPU is visible"))
    for args, message in bad:
        with pytest.raises(SystemExit) as exit:
            cli.main(["generate_sequentially", str(llama_dir), *args])
        err = capsys.readouterr().err.strip()
        assert exit.value.code == 1 and len(err.splitlines()) == 1, err
        assert err.startswith("litgpt generate_sequentially: error:") and message in err, err


def tutorial_commands(command: str, checkpoint_dir: Path, keep_quantize: bool = False) -> list:
    """The tutorial's `litgpt COMMAND ...` lines as argument lists for the tiny model on the CPU.

    The checkpoint folder becomes the tiny one; `--quantize` (bitsandbytes needs CUDA) is dropped without a GPU.
    """
    commands = []
    for line in TUTORIAL.read_text().splitlines():
        if not line.startswith(f"litgpt {command} "):
            continue
        argv = [str(checkpoint_dir) if a.startswith("checkpoints/") else a for a in shlex.split(line)[1:]]
        if "--quantize" in argv and not (keep_quantize or torch.cuda.is_available()):
            i = argv.index("--quantize")
            del argv[i : i + 2]
        commands.append(argv)
    assert commands, f"no `litgpt {command}` line in {TUTORIAL}"
    return commands


def test_tutorial_commands_run(llama_dir, capsys):
    for argv in tutorial_commands("generate_sequentially", llama_dir):
        if "--accelerator" not in argv:
            argv += ["--accelerator", "cpu", "--devices", "2"]
        cli.main(argv + ["--max_new_tokens", "3"])
        assert "Time for inference 1" in capsys.readouterr().err

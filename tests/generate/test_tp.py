"""`generate_tp`: a model split over 2 gloo processes on the CPU decodes as the whole model in one process."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_sequentially import tutorial_commands
from tiny import checkpoint

import litgpt.__main__ as cli
from litgpt.checkpoint import load_model
from litgpt.config import Config
from litgpt.engine.core import compiled_decode_step, ensure_kv_cache
from litgpt.engine.batcher import generate_tokens
from litgpt.engine.tp import check_tp, load_tp, tp_config
from litgpt.generate.tp import generate_tp

PROMPT = [0, 5, 17, 42, 7]
LLAMA = Config(name="tiny-llama", n_layer=2, n_embd=32, n_head=4, n_query_groups=2, intermediate_size=64, mlp_class_name="LLaMAMLP")


@pytest.fixture(scope="session")
def neox_dir(tmp_path_factory):
    return checkpoint(tmp_path_factory, "tiny-random-gpt_neox", "gpt_neox")


@pytest.fixture(scope="session")
def gemma_dir(tmp_path_factory):
    return checkpoint(tmp_path_factory, "tiny-random-gemma", "gemma")


def test_a_rank_gets_its_share_of_heads_groups_and_mlp():
    local = tp_config(LLAMA, 2)
    assert (local.n_head, local.n_query_groups, local.head_size, local.intermediate_size) == (2, 1, 8, 32)
    assert (local.n_embd, local.rope_n_elem) == (LLAMA.n_embd, LLAMA.rope_n_elem)
    with pytest.raises(ValueError, match="its n_head=4 is not divisible by 3"):
        check_tp(LLAMA, 3)
    with pytest.raises(ValueError, match="its n_query_groups=2 is not divisible by 4"):
        check_tp(LLAMA, 4)
    moe = replace(LLAMA, mlp_class_name="LLaMAMoE", n_expert=4, n_expert_per_token=2, moe_intermediate_size=16)
    with pytest.raises(NotImplementedError, match="not LLaMAMoE"):
        check_tp(moe, 2)


def _greedy_on_rank(rank: int, world_size: int, store: str, folders: list, out: str) -> None:
    """One rank of the parity test: greedy tokens of each folder's model split over the group."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        results = {}
        for folder in folders:
            model = load_tp(Path(folder), rank, world_size, torch.device("cpu"))
            ensure_kv_cache(model, 1, len(PROMPT) + 12)
            eager = list(generate_tokens(model, torch.tensor(PROMPT), 12, temperature=0.0))
            results[folder] = dict(eager=eager, kv_groups=model.transformer.h[0].attn.kv_cache.k.size(1))
            if folder == folders[0]:  # the all-reduce hooks traced by torch.compile (the eager backend: no C++ compiler)
                step = compiled_decode_step(backend="eager")
                results[folder]["compiled"] = list(generate_tokens(model, torch.tensor(PROMPT), 12, temperature=0.0, step=step))
        if rank == 0:
            Path(out).write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def test_two_processes_decode_like_one(llama_dir, neox_dir, tmp_path):
    folders = [str(llama_dir), str(neox_dir)]
    out = tmp_path / "tokens.json"
    # fork: the ranks start with torch already imported (the command itself spawns, as CUDA needs; the test below)
    mp.start_processes(_greedy_on_rank, args=(2, str(tmp_path / "store"), folders, str(out)), nprocs=2, start_method="fork")
    results = json.loads(out.read_text())
    for folder in folders:
        model = load_model(Path(folder))
        ensure_kv_cache(model, 1, len(PROMPT) + 12)
        expected = list(generate_tokens(model, torch.tensor(PROMPT), 12, temperature=0.0))
        assert results[folder]["eager"] == expected == results[folder].get("compiled", expected), folder
        assert results[folder]["kv_groups"] == model.config.n_query_groups // 2  # each rank caches its own groups


def test_cli_on_two_cpu_processes_prints_what_generate_prints(llama_dir, capfd):
    """The tutorial's CPU line, as written but for the model, against `litgpt generate` with its other flags."""
    argv = next(a for a in tutorial_commands("generate_tp", llama_dir) if "--accelerator" in a) + ["--max_new_tokens", "8"]
    cli.main(argv)
    out, err = capfd.readouterr()
    assert out.startswith("What food do llamas eat?") and out.count("\n") == 1 and "Time for inference 1" in err, err
    i, j = argv.index("--devices"), argv.index("--accelerator")
    cli.main(["generate"] + [a for k, a in enumerate(argv[1:], 1) if k not in (i, i + 1, j, j + 1)])
    assert capfd.readouterr().out == out


def test_tutorial_gpu_commands_parse():
    """The tutorial's GPU lines (run on GPUs, not here) name only flags and values that the command takes."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_function_arguments(generate_tp, as_positional=True)
    for argv in tutorial_commands("generate_tp", Path("checkpoint"), keep_quantize=True):
        parser.parse_args(argv[1:])


def test_bad_device_counts_and_input_are_one_line_errors(llama_dir, gemma_dir, capfd):
    bad = [([str(llama_dir), "--accelerator", "cpu", "--devices", "3"], "its n_head=4 is not divisible by 3"),
           ([str(llama_dir), "--accelerator", "cpu", "--devices", "0"], "devices must be a positive number"),
           ([str(gemma_dir), "--accelerator", "cpu", "--devices", "2"], "its n_query_groups=1 is not divisible by 2"),
           # what a rank would refuse is refused before the processes start
           ([str(llama_dir), "--accelerator", "cpu", "--devices", "2", "--max_new_tokens", "3000"], "do not fit the model's context"),
           ([str(llama_dir), "--accelerator", "cpu", "--devices", "2", "--precision", "bf17"], "Unknown precision 'bf17'")]
    if not torch.cuda.is_available():
        bad.append(([str(llama_dir), "--accelerator", "cuda"], "no CUDA GPU is visible"))
    for args, message in bad:
        with pytest.raises(SystemExit) as exit:
            cli.main(["generate_tp", *args])
        err = capfd.readouterr().err.strip()
        assert exit.value.code == 1 and len(err.splitlines()) == 1, err
        assert err.startswith("litgpt generate_tp: error:") and message in err, err

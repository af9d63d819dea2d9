"""End to end on a tiny checkpoint: each method finetunes a few steps on a JSON instruction set; final/ is a
complete folder that `litgpt generate` reads; LoRA merging, the merge_lora command and resuming."""

import shutil

import pytest
import torch
import yaml

from finetune_helpers import losses, run, weights


@pytest.fixture
def base_dir(tiny_checkpoint):
    """The tiny checkpoint with room for Alpaca prompts (block_size 256; the weights do not depend on it)."""
    config = yaml.safe_load((tiny_checkpoint / "model_config.yaml").read_text())
    config["block_size"] = 256
    (tiny_checkpoint / "model_config.yaml").write_text(yaml.safe_dump(config))
    return tiny_checkpoint


FOLDER = {"hyperparameters.yaml", "lit_model.pth", "model_config.yaml", "prompt_style.yaml", "tokenizer.json", "tokenizer_config.json"}
EXTRA = {"finetune_full": set(), "finetune_lora": {"lit_model.pth.lora"}, "finetune_adapter": {"lit_model.pth.adapter"},
         "finetune_adapter_v2": {"lit_model.pth.adapter_v2"}}


@pytest.mark.parametrize("command", list(EXTRA))
def test_finetune_method(command, base_dir, json_data, tmp_path, capsys):
    out = tmp_path / "out"
    extra = {"lora_r": 4, "lora_key": True, "lora_mlp": True} if command == "finetune_lora" else {}
    run(command, base_dir, json_data, out, **extra)
    printed = capsys.readouterr().out
    assert "Number of trainable parameters" in printed and "The longest sequence length in the train data is" in printed
    final = out / "final"
    assert FOLDER | EXTRA[command] <= {p.name for p in final.iterdir()}
    hparams = yaml.safe_load((final / "hyperparameters.yaml").read_text())
    assert hparams["data"]["class_path"] == "litgpt.data.JSON" and hparams["data"]["init_args"]["prompt_style"] == "alpaca"

    history = losses(out)
    base = weights(base_dir / "lit_model.pth")
    if command == "finetune_adapter":  # zero gates: the loss moves little in 6 steps, so check the weights
        trained = weights(final / "lit_model.pth.adapter")
        assert set(trained) == {"transformer.h.1.attn.adapter_wte.weight", "transformer.h.1.attn.gating_factor"}
        assert trained["transformer.h.1.attn.gating_factor"].abs().sum() > 0
    else:
        assert history[-1] < history[0]
    merged = weights(final / "lit_model.pth")
    assert set(merged) == set(base)
    assert torch.equal(merged["transformer.wte.weight"], base["transformer.wte.weight"]) == (command != "finetune_full")
    if command == "finetune_lora":
        assert not torch.equal(merged["transformer.h.0.attn.qkv.weight"], base["transformer.h.0.attn.qkv.weight"])
        assert all("lora_" in k for k in weights(final / "lit_model.pth.lora"))
    if command == "finetune_adapter_v2":
        trained = weights(final / "lit_model.pth.adapter_v2")
        assert "transformer.h.0.attn.qkv.adapter_scale" in trained and "transformer.h.0.norm_1.weight" in trained

    from litgpt.generate.cli import generate

    generate(final, "Say hello.", max_new_tokens=4, top_k=1)
    assert "### Response:" in capsys.readouterr().out


def test_sample_generation_at_each_validation(base_dir, json_data, tmp_path, capsys):
    """A greedy reply to a validation instruction follows the initial, interval and final validations."""
    out = tmp_path / "out"
    run("finetune_lora", base_dir, json_data, out, train={"max_steps": 2},
        eval={"interval": 1, "initial_validation": True, "max_new_tokens": 5, "evaluate_example": 1})
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    validations = [i for i, line in enumerate(lines) if "val loss" in line]
    assert len(validations) == 3  # step 0, step 1, after the last step (2)
    for i in validations:
        assert lines[i + 1] == "Instruction: Name a fast animal." and lines[i + 2].startswith("Generated: ")
    assert "prompt_style.yaml" in {p.name for p in (out / "final").iterdir()}


def test_no_sample_generation_without_max_new_tokens(base_dir, json_data, tmp_path, capsys):
    run("finetune_full", base_dir, json_data, tmp_path / "out", train={"max_steps": 1})
    printed = capsys.readouterr().out
    assert "val loss" in printed and "Instruction:" not in printed


def test_ignore_index_other_than_minus_100_trains(base_dir, json_data, tmp_path):
    """Labels -1 are skipped by the loss (as a token id they would fail), exactly as -100 would be."""
    run("finetune_lora", base_dir, json_data, tmp_path / "minus1", ignore_index=-1, mask_prompt=True, train={"max_steps": 3})
    run("finetune_lora", base_dir, json_data, tmp_path / "minus100", mask_prompt=True, train={"max_steps": 3})
    assert losses(tmp_path / "minus1") == pytest.approx(losses(tmp_path / "minus100"), rel=1e-5)


def test_lora_unmerged_folder_merge_and_generate(base_dir, json_data, tmp_path, capsys):
    from litgpt.checkpoint import load_model
    from litgpt.finetuned import finetuned_kind, load_finetuned
    from litgpt.merge_lora import merge_lora

    out = tmp_path / "out"
    run("finetune_lora", base_dir, json_data, out, lora_r=4, lora_alpha=8, lora_key=True, lora_projection=True, lora_head=True)
    final = out / "final"
    assert finetuned_kind(final) is None  # final/lit_model.pth is the merged model
    # a folder as LitGPT's step checkpoints are: LoRA weights only, the base named by hyperparameters.yaml
    unmerged = tmp_path / "unmerged"
    unmerged.mkdir()
    for name in ("lit_model.pth.lora", "hyperparameters.yaml", "model_config.yaml", "tokenizer.json", "tokenizer_config.json", "prompt_style.yaml"):
        shutil.copy(final / name, unmerged / name)
    assert finetuned_kind(unmerged) == "lora"
    x = torch.randint(0, 400, (1, 16))
    with torch.no_grad():
        expected = load_model(final)(x)
        assert torch.allclose(load_finetuned(unmerged)(x), expected, atol=1e-5)
        # the unmerged LoRA model itself (not merged) gives the same logits
        from litgpt.lora import add_lora

        model = load_model(base_dir)
        add_lora(model, r=4, alpha=8, query=True, key=True, value=True, projection=True, head=True)
        model.load_state_dict(weights(final / "lit_model.pth.lora"), strict=False)
        assert torch.allclose(model.eval()(x), expected, atol=1e-5)

    from litgpt.generate.cli import generate

    generate(unmerged, "Say hello.", max_new_tokens=3, top_k=1)
    merge_lora(unmerged)
    merged = weights(unmerged / "lit_model.pth")
    for key, value in weights(final / "lit_model.pth").items():
        assert torch.allclose(merged[key], value, atol=1e-6), key
    assert finetuned_kind(unmerged) is None


def test_adapter_folder_without_base_weights_loads_from_hyperparameters(base_dir, json_data, tmp_path):
    from litgpt.finetuned import finetuned_kind, load_finetuned

    out = tmp_path / "out"
    run("finetune_adapter_v2", base_dir, json_data, out, train={"max_steps": 2})
    final = out / "final"
    (final / "lit_model.pth").unlink()  # as LitGPT writes it: adapter weights only
    assert finetuned_kind(final) == "adapter"
    model = load_finetuned(final)
    assert type(model.transformer.h[1].attn).__name__ == "AdapterAttention"
    trained = weights(final / "lit_model.pth.adapter_v2")
    assert torch.equal(model.transformer.h[0].norm_1.weight, trained["transformer.h.0.norm_1.weight"])


@pytest.mark.parametrize("command", list(EXTRA))
def test_step_folders_are_named_and_filled_as_litgpts(command, base_dir, json_data, tmp_path, capsys):
    """LitGPT's finetuning writes out_dir/step-{step:06d}/ with the method's weights file ({"model": what it trains}),
    the base's config and tokenizer files, hyperparameters.yaml and prompt_style.yaml; ours adds the training state
    (in lit_model.pth itself for full finetuning, as LitGPT) that --resume finds by the same names."""
    from litgpt.finetuned import load_finetuned

    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="no complete step-"):
        run(command, base_dir, json_data, out, resume=True)
    run(command, base_dir, json_data, out, train={"max_steps": 2, "save_interval": 2})
    assert sorted(p.name for p in out.glob("step-*")) == ["step-000002"]
    step = out / "step-000002"
    weights_file = {"finetune_full": "lit_model.pth"}.get(command, next(iter(EXTRA[command]), None))
    state_file = "lit_model.pth" if command == "finetune_full" else "training_state.pth"
    files = {p.name for p in step.iterdir()}
    assert {weights_file, state_file, "hyperparameters.yaml", "model_config.yaml", "prompt_style.yaml", "tokenizer.json",
            "tokenizer_config.json"} <= files and ("lit_model.pth" in files) == (command == "finetune_full")
    saved = torch.load(step / weights_file, weights_only=True)
    assert set(saved) == ({"model"} if command != "finetune_full" else set(saved) | {"model", "optimizer", "step_count"})
    assert set(saved["model"]) == set(weights(out / "final" / weights_file))
    load_finetuned(step)  # what `litgpt generate` and `chat` read from a step folder: base weights from hyperparameters.yaml

    run(command, base_dir, json_data, out, train={"max_steps": 3, "save_interval": 2}, resume=step / weights_file)
    assert f"Resuming from {step / state_file}" in capsys.readouterr().out


def test_lora_resume_matches_uninterrupted(base_dir, json_data, tmp_path):
    whole = tmp_path / "whole"
    run("finetune_lora", base_dir, json_data, whole, train={"save_interval": 3})
    assert (whole / "step-000003" / "training_state.pth").is_file()
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(whole / "step-000003", resumed / "step-000003")
    run("finetune_lora", base_dir, json_data, resumed, train={"save_interval": 3}, resume=True)
    a, b = weights(whole / "final" / "lit_model.pth.lora"), weights(resumed / "final" / "lit_model.pth.lora")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_quantize_needs_a_gpu(base_dir, json_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU error")
    with pytest.raises(ValueError, match="CUDA"):
        run("finetune_lora", base_dir, json_data, tmp_path / "out", quantize="bnb.nf4")


def test_command_line(base_dir, json_data, tmp_path):
    """The flags as typed: `--data JSON --data.json_path ...`, nested `--train.*`, LoRA's flags."""
    from jsonargparse import auto_cli

    from litgpt.train import finetune

    out = tmp_path / "out"
    args = [
        "finetune", str(base_dir), "--out_dir", str(out), "--precision", "32-true", "--data", "JSON",
        "--data.json_path", str(json_data), "--data.num_workers", "0", "--data.mask_prompt", "true",
        "--train.max_steps", "2", "--train.global_batch_size", "2", "--train.micro_batch_size", "1",
        "--train.lr_warmup_steps", "1", "--eval.interval", "1", "--eval.max_iters", "1", "--lora_r", "2", "--lora_head", "true",
    ]
    auto_cli({"finetune": finetune.finetune}, args=args, as_positional=True)
    hparams = yaml.safe_load((out / "final" / "hyperparameters.yaml").read_text())
    assert hparams["lora_r"] == 2 and hparams["lora_head"] is True and hparams["data"]["init_args"]["mask_prompt"] is True
    assert "lm_head.lora_A" in weights(out / "final" / "lit_model.pth.lora")


def test_the_data_is_prepared_and_set_up_once(base_dir, json_data, tmp_path):
    # the longest sample (which sets the model's sequence length) and the loaders read the same prepared data
    from litgpt.data import JSON
    from litgpt.train import finetune
    from litgpt.train.args import EvalArgs, TrainArgs

    calls = []

    class CountingJSON(JSON):
        def prepare_data(self) -> None:
            calls.append("prepare_data")
            super().prepare_data()

        def setup(self, stage: str = "") -> None:
            calls.append("setup")
            super().setup(stage)

    finetune.finetune_full(base_dir, out_dir=tmp_path / "out", precision="32-true", data=CountingJSON(json_path=json_data, num_workers=0),
                           train=TrainArgs(global_batch_size=1, micro_batch_size=1, max_steps=1, save_interval=None),
                           eval=EvalArgs(interval=100, max_iters=1, max_new_tokens=None, final_validation=False))
    assert calls == ["prepare_data", "setup"]


def test_the_finetuning_commands_take_their_flags_from_one_table(capsys):
    # jsonargparse reads the signature and Args docstring that `_command` builds from FLAGS: names, order, defaults, help
    import inspect
    from pathlib import Path

    import litgpt.__main__ as cli
    from litgpt.train import finetune
    from litgpt.train.dpo import finetune_dpo

    commands = {"finetune_lora": "lora", "finetune_full": "full", "finetune_adapter": "adapter",
                "finetune_adapter_v2": "adapter-v2", "finetune_dpo": "dpo"}
    for name, folder in commands.items():
        fn = finetune_dpo if name == "finetune_dpo" else getattr(finetune, name)
        assert inspect.signature(fn).parameters["out_dir"].default == Path("out/finetune") / folder
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        printed = " ".join(capsys.readouterr().out.split())
        assert f"--seed SEED {finetune.FLAGS['seed'][2]} (type: int, default: 1337)" in printed, name
        assert ("--lora_r LORA_R The LoRA rank. (type: int, default: 8)" in printed) == (name in ("finetune_lora", "finetune_dpo"))
    # LitGPT's order, which --help and --print_config follow
    assert list(inspect.signature(finetune.finetune_full).parameters)[:8] == [
        "checkpoint_dir", "out_dir", "precision", "devices", "num_nodes", "resume", "compile", "data"]
    assert inspect.signature(finetune.finetune_full).parameters["eval"].default.interval == 600
    assert finetune.finetune is finetune.finetune_lora
    with pytest.raises(TypeError, match="lora_rank"):
        finetune.finetune_lora("checkpoints/x", lora_rank=4)  # a misspelt flag, as a Python call

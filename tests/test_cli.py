"""The `litgpt` command line: every subcommand has help, help does not import torch, and bad input is one line."""

import subprocess
import sys

import pytest

from litgpt.__main__ import COMMANDS


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "litgpt", *args], capture_output=True, text=True, timeout=120)


def test_top_level_help_lists_every_command():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_help_does_not_import_heavy_libraries(name):
    code = (
        "import sys\n"
        "from litgpt.__main__ import main\n"
        "try:\n"
        f"    main([{name!r}, '--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('torch', 'lightning', 'transformers', 'huggingface_hub', 'litdata') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    assert "usage: litgpt" in result.stdout


def test_bad_input_is_one_line_without_traceback(tmp_path):
    result = run("validate", str(tmp_path / "missing"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"litgpt validate: error: No checkpoint folder at {str(tmp_path / 'missing')!r}")


def test_config_file_supplies_arguments(tmp_path, tiny_checkpoint):
    config = tmp_path / "validate.yaml"
    config.write_text(f"checkpoint_dir: {tiny_checkpoint}\ntraining: true\n")
    result = run("validate", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "Full finetuning with AdamW" in result.stdout


def test_arguments_apply_in_order_as_in_litgpt(tmp_path, tiny_checkpoint):
    # LitGPT's rule (jsonargparse's): a --config file overrides what was typed before it, and what follows it wins;
    # an overridden value is said on stderr. So LitGPT's `litgpt finetune lora --config recipe.yaml` works here too
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"checkpoint_dir: {tiny_checkpoint}\ntraining: true\n")
    result = run("validate", "lora", "--config", str(recipe))
    assert result.returncode == 0, result.stderr
    assert f"Checked {tiny_checkpoint}" in result.stdout and "Full finetuning with AdamW" in result.stdout
    assert f"--config {recipe} sets checkpoint_dir: {tiny_checkpoint}, replacing 'lora' typed before it" in result.stderr
    other = tmp_path / "other.yaml"
    other.write_text(f"checkpoint_dir: {tmp_path / 'not-this-one'}\ntraining: true\n")
    result = run("validate", "--config", str(other), str(tiny_checkpoint))
    assert result.returncode == 0, result.stderr
    assert f"Checked {tiny_checkpoint}" in result.stdout and "note:" not in result.stderr


def test_pretrain_takes_its_model_name_bare_after_flags(tmp_path):
    recipe = tmp_path / "p.yaml"
    recipe.write_text("model_name: pythia-70m\n")
    for args, name in ((["--config", str(recipe), "pythia-14m"], "pythia-14m"), (["pythia-14m", "--config", str(recipe)], "pythia-70m"),
                       (["--train.max_tokens", "10", "pythia-14m"], "pythia-14m")):
        result = run("pretrain", *args, "--print_config")
        assert result.returncode == 0, result.stderr
        assert f"model_name: {name}\n" in result.stdout, (args, result.stdout[:300])



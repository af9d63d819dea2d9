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


def test_what_the_user_types_wins_over_the_config_file(tmp_path, tiny_checkpoint):
    # a recipe names one checkpoint; the folder given on the command line, before or after --config, is used
    config = tmp_path / "recipe.yaml"
    config.write_text(f"checkpoint_dir: {tmp_path / 'not-this-one'}\ntraining: true\n")
    for args in (["validate", str(tiny_checkpoint), "--config", str(config)], ["validate", "--config", str(config), str(tiny_checkpoint)]):
        result = run(*args)
        assert result.returncode == 0, result.stderr
        assert f"Checked {tiny_checkpoint}" in result.stdout and "Full finetuning with AdamW" in result.stdout

"""A LoRA run on a small model: a recipe's max_seq_length above the model's block size is fine (rows follow the
longest sample), and its step-* folders merge with `litgpt merge_lora` as they are."""

import subprocess
import sys

import torch

from finetune_helpers import run


def test_recipe_length_on_small_model_and_step_folder_merges(tiny_checkpoint, json_data, tmp_path, capsys):
    from litgpt.checkpoint import load_state_dict
    from litgpt.config import Config
    from litgpt.finetuned import load_finetuned
    from litgpt.model import GPT

    out = tmp_path / "out"
    # 512 as config_hub's phi-2 LoRA recipe, against the tiny model's block_size of 64
    run("finetune_lora", tiny_checkpoint, json_data, out, train=dict(max_seq_length=512, max_steps=2, save_interval=1))
    printed = capsys.readouterr().out
    assert f"  settings {out / 'hyperparameters.yaml'} (all of them)" in printed  # a short summary, not every setting
    assert "'lora_alpha'" not in printed and (out / "hyperparameters.yaml").is_file()
    step = out / "step-000001"
    tokens = torch.tensor([[1, 5, 9, 30, 7]])
    with torch.no_grad():
        expected = load_finetuned(step)(tokens)

    result = subprocess.run([sys.executable, "-m", "litgpt", "merge_lora", str(step)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (step / "lit_model.pth.lora").is_file()
    model = GPT(Config.from_checkpoint(step))
    model.load_state_dict(load_state_dict(step / "lit_model.pth"))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(tokens), expected)


def test_readme_own_data_recipe_runs_as_written(tiny_checkpoint, tmp_path):
    """README's finetune row with its "your own data" flags, on the tiny model standing in for microsoft/phi-2
    (checkpoints/microsoft/phi-2 in the working folder); shortened by --train.max_steps 1 and no loader workers."""
    import json
    import re
    import shutil
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| finetune |"))
    command = re.search(r"`litgpt (finetune_lora [^`]+)`", row).group(1).split()
    own_data = re.search(r"`(--data JSON --data\.json_path FILE)`", row).group(1).split()
    shutil.copytree(tiny_checkpoint, tmp_path / "checkpoints" / command[1])
    shutil.copytree(Path(__file__).parents[2] / "config_hub", tmp_path / "config_hub")
    records = [{"instruction": f"Add {i} and {i}.", "input": "", "output": str(2 * i)} for i in range(30)]
    (tmp_path / "mine.json").write_text(json.dumps(records))
    args = command + [("mine.json" if a == "FILE" else a) for a in own_data]
    args += ["--train.max_steps", "1", "--data.num_workers", "0", "--eval.max_iters", "1", "--eval.max_new_tokens", "2"]
    result = subprocess.run([sys.executable, "-m", "litgpt", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "  data     JSON (mine.json)" in result.stdout
    assert (tmp_path / "out" / "finetune" / "lora-phi-2" / "final" / "lit_model.pth.lora").is_file()

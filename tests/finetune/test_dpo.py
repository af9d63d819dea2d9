"""DPO (`litgpt finetune_dpo`): the loss against TRL's DPOTrainer, training raises the reward margin, resume after
SIGKILL is exact, bad preference records are one line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from finetune_helpers import weights
from test_finetune_sigkill import REPO_ROOT, run_killable

PAIRS = [
    {"prompt": "Say hello.", "chosen": "Hello world!", "rejected": "The lazy dog."},
    {"prompt": "Name a fast animal.", "chosen": "The quick brown fox.", "rejected": "Numbers 12345"},
    {"prompt": "Count to five.", "chosen": "Numbers 12345", "rejected": "Hello tokenizer!", "system": "Be brief."},
    {"prompt": "Describe the dog.", "chosen": "The lazy dog.", "rejected": "one by one"},
]


@pytest.fixture
def prefs(tmp_path) -> Path:
    path = tmp_path / "prefs.json"
    path.write_text(json.dumps(PAIRS * 3))
    return path


def perturbed_copy(checkpoint: Path, target: Path) -> Path:
    """The checkpoint with every weight moved a little: a policy that differs from its reference."""
    from litgpt.checkpoint import load_state_dict, model_state_dict

    shutil.copytree(checkpoint, target)
    state = model_state_dict(load_state_dict(checkpoint / "lit_model.pth"))
    torch.manual_seed(1)
    torch.save({k: v + 0.05 * torch.randn_like(v) for k, v in state.items()}, target / "lit_model.pth")
    return target


def test_dpo_loss_equals_trl_dpo_trainer(tiny_checkpoint, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from trl import DPOConfig, DPOTrainer

    from litgpt.checkpoint import load_state_dict, model_state_dict
    from litgpt.config import Config
    from litgpt.convert.lit_to_hf import convert_from_litgpt
    from litgpt.model import GPT
    from litgpt.train.dpo import DPO
    from litgpt.train.methods import Full

    policy_dir = perturbed_copy(tiny_checkpoint, tmp_path / "policy")
    convert_from_litgpt(tiny_checkpoint, tmp_path / "hf-ref")
    convert_from_litgpt(policy_dir, tmp_path / "hf-policy")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tmp_path / "hf-ref")
    tokenizer.pad_token = tokenizer.eos_token
    hf = lambda d: AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)  # noqa: E731
    args = DPOConfig(output_dir=str(tmp_path / "trl"), beta=0.1, per_device_train_batch_size=4, report_to=[],
                     use_cpu=True, bf16=False, dataloader_num_workers=0)  # bf16 (TRL's default) would autocast the reference
    records = [{"prompt": p["prompt"], "chosen": " " + p["chosen"], "rejected": " " + p["rejected"]} for p in PAIRS]
    trainer = DPOTrainer(model=hf(tmp_path / "hf-policy"), ref_model=hf(tmp_path / "hf-ref"), args=args,
                         train_dataset=Dataset.from_list(records), processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    trl_loss = trainer.compute_loss(trainer.model, batch).item()

    def gpt(folder: Path) -> GPT:
        model = GPT(Config.from_file(folder / "model_config.yaml"))
        model.load_state_dict(model_state_dict(load_state_dict(folder / "lit_model.pth")))
        return model

    method = DPO(Full(), beta=0.1)
    method.reference = gpt(tiny_checkpoint)
    ours = {"input_ids": batch["input_ids"], "labels": batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)}
    loss = method.loss(gpt(policy_dir), ours, batch["input_ids"].size(1), -100).item()
    print(f"DPO loss: ours {loss:.7f}, TRL {trl_loss:.7f}, difference {abs(loss - trl_loss):.2e}")
    assert abs(loss - 0.6931) > 1e-2  # the policy differs from the reference: a real test of the log-ratios
    assert abs(loss - trl_loss) < 1e-4


def run_dpo(checkpoint: Path, data: Path, out: Path, *extra: str, kill_at: int = 0) -> subprocess.CompletedProcess:
    preferences = ["--data", "Preference", "--data.json_path", str(data), "--data.prompt_style", "default"]
    return run_killable("finetune_dpo", checkpoint, out, preferences, "--lora_dropout", "0", *extra, kill_at=kill_at)


def logged(out_dir: Path, key: str) -> dict:
    import csv

    by_step = {}
    for path in sorted(Path(out_dir, "logs").rglob("metrics.csv")):
        for row in csv.DictReader(open(path)):
            if row.get(key):
                by_step[int(row["step"])] = float(row[key])
    return by_step


def test_dpo_raises_the_reward_margin_and_resumes_exactly_after_sigkill(tiny_checkpoint, prefs, tmp_path):
    whole = run_dpo(tiny_checkpoint, prefs, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    margins = logged(tmp_path / "whole", "rewards/margins")
    assert sorted(margins) == list(range(1, 9))
    assert margins[1] == 0.0  # LoRA starts as the base model: the policy is the reference
    assert sum(margins[k] for k in (7, 8)) / 2 > 0.05 and margins[8] > margins[1]
    for key in ("rewards/accuracies", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"):
        assert sorted(logged(tmp_path / "whole", key)) == list(range(1, 9)), key
    final = tmp_path / "whole" / "final"
    assert {"lit_model.pth.lora", "lit_model.pth", "hyperparameters.yaml", "training.png"} <= {p.name for p in final.iterdir()}

    killed = run_dpo(tiny_checkpoint, prefs, tmp_path / "killed", kill_at=6)
    assert killed.returncode == -9, killed.stderr
    resumed = run_dpo(tiny_checkpoint, prefs, tmp_path / "killed", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(final / "lit_model.pth.lora"), weights(tmp_path / "killed" / "final" / "lit_model.pth.lora")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert logged(tmp_path / "killed", "loss") == logged(tmp_path / "whole", "loss")


def test_full_dpo_keeps_a_frozen_reference(tiny_checkpoint, prefs, tmp_path):
    from litgpt.data.preference import Preference
    from litgpt.train.args import EvalArgs, TrainArgs
    from litgpt.train.dpo import DPOArgs, finetune_dpo

    finetune_dpo(tiny_checkpoint, out_dir=tmp_path / "full", method="full", dpo=DPOArgs(beta=0.5), precision="32-true",
                 data=Preference(json_path=prefs, prompt_style="default", num_workers=0),
                 train=TrainArgs(global_batch_size=2, micro_batch_size=2, max_steps=3, lr_warmup_steps=1, save_interval=None),
                 eval=EvalArgs(interval=100, max_iters=1), optimizer={"class_path": "torch.optim.SGD", "init_args": {"lr": 0.5}})
    margins = logged(tmp_path / "full", "rewards/margins")
    assert margins[1] == 0.0 and margins[3] != 0.0  # rewards are measured against the base, which did not move
    assert (tmp_path / "full" / "final" / "lit_model.pth").is_file()


@pytest.mark.parametrize(
    "content, message",
    [
        ([{"prompt": "a", "chosen": "b"}], "prefs.json record 0 lacks the field 'rejected' (each record needs prompt, chosen, rejected)"),
        ([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": 3, "rejected": "c"}],
         "prefs.json record 1: the field 'chosen' must be a string, got 3; fix or remove the record"),
        ([{"prompt": "a", "chosen": "b", "rejected": "c", "system": ["x"]}],
         "prefs.json record 0: the field 'system' must be a string, got [\"x\"]; fix or remove the record"),
        ({"prompt": "a"}, "prefs.json must hold a list of objects with prompt, chosen, rejected keys"),
    ],
    ids=["missing-field", "not-a-string", "bad-system", "not-a-list"],
)
def test_bad_preference_records_are_one_line(tiny_checkpoint, tmp_path, content, message):
    path = tmp_path / "prefs.json"
    path.write_text(json.dumps(content))
    result = subprocess.run(
        [sys.executable, "-m", "litgpt", "finetune_dpo", str(tiny_checkpoint), "--data", "Preference",
         "--data.json_path", str(path), "--out_dir", str(tmp_path / "out")],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(str(tmp_path / message)), result.stderr

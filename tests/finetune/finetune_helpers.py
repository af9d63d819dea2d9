"""Running a tiny finetuning in process, and reading what it wrote."""

import csv
from pathlib import Path
from typing import Any, Dict, List

# a tiny instruction data set in the JSON format (the fixtures write it; tests import it from here, as a module
# named conftest is another folder's when the whole suite runs)
RECORDS = [
    {"instruction": "Say hello.", "input": "", "output": "Hello world!"},
    {"instruction": "Name a fast animal.", "input": "", "output": "The quick brown fox."},
    {"instruction": "Repeat the text.", "input": "one by one", "output": "one by one"},
    {"instruction": "Count to five.", "input": "", "output": "Numbers 12345"},
    {"instruction": "Say hello.", "input": "politely", "output": "Hello tokenizer!"},
    {"instruction": "Describe the dog.", "input": "", "output": "The lazy dog."},
]


def run(command: str, checkpoint_dir: Path, data_dir: Path, out_dir: Path, **kwargs: Any) -> None:
    """Finetune `checkpoint_dir` on the JSON folder `data_dir` for a few steps on the CPU."""
    from litgpt.data import JSON
    from litgpt.train import finetune
    from litgpt.train.args import EvalArgs, TrainArgs

    train = dict(global_batch_size=2, micro_batch_size=1, max_steps=6, lr_warmup_steps=1, save_interval=None, log_interval=1)
    train.update(kwargs.pop("train", {}))
    evaluation = dict(interval=100, max_iters=2)
    evaluation.update(kwargs.pop("eval", {}))
    getattr(finetune, command)(
        checkpoint_dir=checkpoint_dir,
        out_dir=out_dir,
        precision="32-true",
        devices=kwargs.pop("devices", 1),
        data=JSON(json_path=data_dir, num_workers=0, prompt_style=kwargs.pop("prompt_style", "alpaca"), mask_prompt=kwargs.pop("mask_prompt", False),
                  ignore_index=kwargs.pop("ignore_index", -100)),
        train=TrainArgs(**train),
        eval=EvalArgs(**evaluation),
        optimizer=kwargs.pop("optimizer", {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.02}}),
        **kwargs,
    )


def losses(out_dir: Path) -> List[float]:
    rows = list(csv.DictReader(open(next(Path(out_dir, "logs").rglob("metrics.csv")))))
    return [float(r["loss"]) for r in rows if r.get("loss")]


def weights(path: Path) -> Dict[str, Any]:
    from litgpt.checkpoint import load_state_dict, model_state_dict

    return model_state_dict(load_state_dict(path))

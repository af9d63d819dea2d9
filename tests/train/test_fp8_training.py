"""`--fp8`: the real commands (subprocesses) train a tiny model whose linear sizes are multiples of 16 with torchao's
Float8Linear in the blocks, write checkpoints of plain tensors under the usual keys that `litgpt generate` loads and
that resume; on two devices under FSDP; a missing torchao is one line.

On a GPU with float8 matmuls (compute capability >= 8.9) the commands run as users run them. Elsewhere they run on
CPU processes through `benchmarks/on_cpus.py --emulate_fp8` (torchao's emulation of the float8 matmuls, in bf16-mixed,
the GPUs' default precision), and the two-device tests under `--fsdp`: the same conversion, checkpoints, resume and
FSDP wrapping, without the GPU's kernels. Skipped, with the reason, without torchao. The refusals on CPUs (what a
user gets there) are tests/train/test_fp8.py.

    python -m pytest -q tests/train/test_fp8_training.py -ra      # on an H100/H200 with torchao installed: the GPU path
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest
import torch

from cli_checks import litgpt, one_line_error
from train_helpers import CORPUS, TINY_MODEL, logged


def _why_not() -> Optional[str]:
    try:
        import torchao.float8  # noqa: F401
    except ImportError as e:
        return f"fp8 training needs torchao (pip install torchao): {e}"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))

ON_CPUS = Path(__file__).resolve().parents[2] / "benchmarks" / "on_cpus.py"
ON_GPU = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)
TWO_DEVICES = pytest.mark.skipif(ON_GPU and torch.cuda.device_count() < 2, reason="FSDP with fp8 on GPUs needs two CUDA GPUs")


def train(*args: str, timeout: float = 900, env=None) -> subprocess.CompletedProcess:
    """A training command with --fp8: as users run it on a GPU with float8 matmuls, else emulated on CPU processes
    (in bf16-mixed unless told; under FSDP with --devices 2)."""
    if ON_GPU:
        return litgpt(*args, timeout=timeout, env=env)
    switches = ["--emulate_fp8", *(["--fsdp"] if "--devices" in args else [])]
    precision = [] if "--precision" in args else ["--precision", "bf16-mixed"]
    return subprocess.run([sys.executable, str(ON_CPUS), *switches, *args, *precision], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env={**(env or os.environ), "CUDA_VISIBLE_DEVICES": ""})

# every linear size a multiple of 16: qkv 64 -> 192, proj 64 -> 64, fc_1/fc_2 64 -> 128, mlp proj 128 -> 64
FP8_MODEL = {**TINY_MODEL, "n_embd": 64, "n_head": 4, "intermediate_size": 128}
LAYERS = 5 * FP8_MODEL["n_layer"]
OPTIMIZER = json.dumps({"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}})


def pretrain(out: Path, text_dir: Path, config: Path, fp8: str, *flags: str):
    """`litgpt pretrain --fp8 FP8` of the tiny config, which must succeed and say that its layers train in float8."""
    result = train(
        "pretrain", "--model_config", str(config), "--data", "TextFiles", "--data.train_data_path", str(text_dir),
        "--data.num_workers", "0", "--tokenizer_dir", str(CORPUS), "--out_dir", str(out), "--logger_name", "csv",
        "--optimizer", OPTIMIZER, "--train.global_batch_size", "8", "--train.micro_batch_size", "4",
        "--train.max_seq_length", "32", "--train.lr_warmup_steps", "2", "--train.log_interval", "1",
        "--eval.interval", "4", "--eval.max_iters", "2", "--fp8", fp8, *flags, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"fp8: {LAYERS} linear layers train in float8 ({fp8})" in result.stdout.splitlines(), result.stdout[-3000:]


@pytest.fixture
def fp8_config(tmp_path) -> Path:
    from litgpt.config import Config

    path = tmp_path / "model_config.yaml"
    Config(**FP8_MODEL).save(path)
    return path


def finite_losses(out: Path, steps: List[int]) -> List[float]:
    losses = logged(out)
    assert sorted(losses) == steps, losses
    assert all(math.isfinite(v) for v in losses.values()), losses
    return [losses[s] for s in steps]


def test_pretrain_rowwise_trains_saves_plain_weights_generates_and_resumes(tmp_path, text_dir, fp8_config):
    """The default path (bf16-mixed; compiled on GPUs) with --fp8 rowwise."""
    from litgpt.checkpoint import read_plain
    from litgpt.config import Config
    from litgpt.model import GPT

    out = tmp_path / "out"
    pretrain(out, text_dir, fp8_config, "rowwise", "--train.max_steps", "8", "--train.save_interval", "4")
    losses = finite_losses(out, list(range(1, 9)))
    assert losses[-1] < losses[0] - 0.5, losses

    expected = {name: p.shape for name, p in GPT(Config(**FP8_MODEL)).state_dict().items()}
    final = read_plain(out / "final" / "lit_model.pth")
    final = final.get("model", final)
    assert {k: v.shape for k, v in final.items()} == expected
    assert all(type(v) is torch.Tensor for v in final.values()), {k: type(v) for k, v in final.items()}
    step = read_plain(out / "step-00000004" / "lit_model.pth")
    assert set(step["model"]) == set(expected) and all(type(v) is torch.Tensor for v in step["model"].values())

    generated = litgpt("generate", str(out / "final"), "--prompt", "Once upon a time", "--max_new_tokens", "5")
    assert generated.returncode == 0, generated.stderr[-3000:]

    resumed = tmp_path / "resumed"
    pretrain(resumed, text_dir, fp8_config, "rowwise", "--train.max_steps", "8",
             "--resume", str(out / "step-00000004" / "lit_model.pth"))
    again = finite_losses(resumed, [5, 6, 7, 8])
    # the same weights, data and kernels; only the order of a few sums may differ
    assert all(abs(a - b) < 0.05 for a, b in zip(again, losses[4:])), (again, losses[4:])


def test_pretrain_tensorwise_in_bf16_true_eager(tmp_path, text_dir, fp8_config):
    out = tmp_path / "out"
    pretrain(out, text_dir, fp8_config, "tensorwise", "--precision", "bf16-true", "--compile", "false", "--train.max_steps", "3")
    finite_losses(out, [1, 2, 3])


def finetune_full(tmp_path: Path, checkpoint: Path, *flags: str):
    """finetune_full --fp8 rowwise on instruction rows of varying length (micro-batches whose token count is no
    multiple of 16), with a validation sample; the tiny checkpoint's linear sizes (32, 64) are multiples of 16."""
    import yaml

    config = yaml.safe_load((checkpoint / "model_config.yaml").read_text())
    config["block_size"] = 256  # room for Alpaca prompts (the weights do not depend on it)
    (checkpoint / "model_config.yaml").write_text(yaml.safe_dump(config))
    records = [{"instruction": f"Say {word}.", "input": "", "output": f"{word} " * (i + 1)}
               for i, word in enumerate(["hello", "fox", "dog", "one", "two", "three", "four", "five"])]
    data = tmp_path / "sft"
    data.mkdir()
    (data / "train.json").write_text(json.dumps(records[2:]))
    (data / "val.json").write_text(json.dumps(records[:2]))
    out = tmp_path / "out"
    result = train("finetune_full", str(checkpoint), "--out_dir", str(out), "--fp8", "rowwise", "--data", "JSON",
                    "--data.json_path", str(data), "--data.num_workers", "0", "--train.max_steps", "3",
                    "--train.global_batch_size", "2", "--train.micro_batch_size", "1", "--eval.interval", "2",
                    "--eval.max_iters", "1", "--eval.max_new_tokens", "4", *flags, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "fp8: 10 linear layers train in float8 (rowwise)" in result.stdout.splitlines(), result.stdout[-3000:]
    assert "Instruction: Say hello." in result.stdout  # the validation sample, generated with plain matmuls
    finite_losses(out, [1, 2, 3])
    generated = litgpt("generate", str(out / "final"), "--prompt", "Say hello.", "--max_new_tokens", "4")
    assert generated.returncode == 0, generated.stderr[-3000:]


def test_finetune_full_rowwise(tmp_path, tiny_checkpoint):
    finetune_full(tmp_path, tiny_checkpoint)


def test_without_torchao_is_one_line(tmp_path, fp8_config):
    stub = tmp_path / "stub" / "torchao"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('No module named torchao (a stub of this test)')\n")
    root = str(Path(__file__).resolve().parents[2])
    # the stub first; the rest of PYTHONPATH stays (where packages come from a path, as on a machine given wheels)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(stub.parent), root, os.environ.get("PYTHONPATH")]))}
    result = train("pretrain", "--model_config", str(fp8_config), "--fp8", "rowwise", "--out_dir", str(tmp_path / "out"), env=env)
    one_line_error(result, "--fp8 rowwise needs torchao's float8 training: pip install torchao")
    assert not (tmp_path / "out").exists()


@TWO_DEVICES
def test_finetune_full_rowwise_on_two_gpus(tmp_path, tiny_checkpoint):
    """FSDP with validation samples: the sample's plain matmuls read the weights FSDP gathers onto the layers."""
    finetune_full(tmp_path, tiny_checkpoint, "--devices", "2")


@TWO_DEVICES
def test_pretrain_rowwise_on_two_gpus(tmp_path, text_dir, fp8_config):
    """FSDP (Lightning's FSDPStrategy, FSDP1 with use_orig_params) over Float8Linear layers."""
    out = tmp_path / "out"
    pretrain(out, text_dir, fp8_config, "rowwise", "--devices", "2", "--train.max_steps", "4", "--train.save_interval", "2")
    finite_losses(out, [1, 2, 3, 4])
    assert (out / "final" / "lit_model.pth").is_file()

"""`litgpt validate`: a preflight check of a checkpoint folder and an estimate of the memory it needs."""

import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from litgpt.checkpoint import TOKENIZER_MODEL_FILES
from litgpt.train.args import EvalArgs, TrainArgs

# LitGPT's --dtype names the weights' dtype; the estimate runs at the matching precision
DTYPE_PRECISIONS = {"float32": "32-true", "float16": "16-true", "bfloat16": "bf16-true"}


def validate(
    checkpoint_dir: Path,
    *,
    model_filename: str = "lit_model.pth",
    dtype: Optional[str] = None,
    training: bool = False,
    precision: Optional[str] = None,
    lora_r: int = 8,
    train: Optional[TrainArgs] = None,
    eval: Optional[EvalArgs] = None,
    optimizer: Optional[Union[str, Dict]] = None,
) -> None:
    """Check that a checkpoint folder is complete and consistent, and estimate the memory it needs.

    Every problem found is listed (not only the first), the training settings' numbers included when given
    (`litgpt validate DIR --train.max_norm -1 --optimizer.lr 0.01`); the command fails if there is any.

    Args:
        checkpoint_dir: The checkpoint folder (lit_model.pth, model_config.yaml, tokenizer files).
        model_filename: The weights file in the folder to check.
        dtype: The weights' dtype to estimate memory for: float32, float16 or bfloat16. float32 when neither this
            nor --precision is given.
        training: Also estimate the memory of full finetuning and of LoRA finetuning with AdamW.
        precision: The precision to estimate for instead of --dtype: bf16-true, 16-true, 32-true, bf16-mixed or
            16-mixed.
        lora_r: The LoRA rank for the LoRA estimate (the layers finetune_lora adapts by default: query and value).
        train: Training settings to check (`--train.*`), as the training commands take them.
        eval: Validation settings to check (`--eval.*`).
        optimizer: The optimizer to check (`--optimizer AdamW --optimizer.lr 0.01`, or {class_path, init_args}).
    """
    precision = estimate_precision(dtype, precision)  # bad values fail here, before any file is read
    from litgpt.checkpoint import resolve_checkpoint_dir

    checkpoint_dir = resolve_checkpoint_dir(checkpoint_dir)
    problems: List[str] = _settings_problems(train, eval, optimizer)
    config = _check_config(checkpoint_dir, problems)
    tokenizer_vocab = _check_tokenizer(checkpoint_dir, problems)
    if config is not None and tokenizer_vocab is not None and tokenizer_vocab > config.padded_vocab_size:
        problems.append(
            f"the tokenizer has {tokenizer_vocab} tokens but the model's embedding has only {config.padded_vocab_size} rows"
        )
    shapes = _check_weights(checkpoint_dir / model_filename, config, problems)

    print(f"Checked {checkpoint_dir}")
    if config is not None:
        from litgpt.preflight import parameter_count

        n_params = sum(math.prod(shape) for shape in shapes.values()) if shapes else parameter_count(config)
        for line in memory_estimate(config, n_params, precision, training, lora_r):
            print(line)
    if problems:
        for problem in problems:
            print(f"  problem: {problem}")
        raise ValueError(f"{len(problems)} problem(s) found in {checkpoint_dir}")
    print("No problems found.")


def estimate_precision(dtype: Optional[str], precision: Optional[str]) -> str:
    """The precision to estimate memory at, from LitGPT's --dtype and our --precision (32-true when neither is
    given). ValueError for an unknown value, or when both are given and the weights' dtypes differ."""
    import torch

    if dtype is not None and dtype not in DTYPE_PRECISIONS:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPE_PRECISIONS)}, got {dtype!r}")
    if precision is None:
        return DTYPE_PRECISIONS[dtype or "float32"]
    weight_bytes, _ = precision_bytes(precision)  # an unknown precision fails here
    if dtype is not None:
        from litgpt.checkpoint import precision_dtype

        weights = torch.float32 if weight_bytes == 4 else precision_dtype(precision, torch.device("cpu"))
        if weights != getattr(torch, dtype):
            raise ValueError(
                f"--dtype {dtype} and --precision {precision} disagree (that precision keeps the weights in "
                f"{str(weights).replace('torch.', '')}); give one of them"
            )
    return precision


def _settings_problems(train: Optional[TrainArgs], eval: Optional[EvalArgs], optimizer: Optional[Union[str, Dict]]) -> List[str]:
    from litgpt.settings_check import training_problems, warn_train

    if train is None and eval is None and optimizer is None:
        return []
    train, eval = train or TrainArgs(), eval or EvalArgs()
    warn_train(train)
    return training_problems(train, eval, optimizer)


def _check_config(checkpoint_dir: Path, problems: List[str]):
    from litgpt.config import Config

    try:
        config = Config.from_checkpoint(checkpoint_dir)
    except Exception as error:  # any unreadable config is a problem to report, not a crash
        problems.append(f"the model config cannot be read: {error}")
        return None
    if not (checkpoint_dir / "model_config.yaml").is_file():
        problems.append(f"model_config.yaml is missing (the registry entry {config.name!r} was assumed)")
    return config


def _check_tokenizer(checkpoint_dir: Path, problems: List[str]) -> Optional[int]:
    if not any((checkpoint_dir / name).is_file() for name in TOKENIZER_MODEL_FILES):
        problems.append(f"no tokenizer: expected {' or '.join(TOKENIZER_MODEL_FILES)}")
        return None
    from litgpt.tokenizer import Tokenizer

    try:
        return Tokenizer(checkpoint_dir).vocab_size
    except Exception as error:
        problems.append(f"the tokenizer does not load: {error}")
        return None


def _check_weights(path: Path, config, problems: List[str]) -> Dict[str, Tuple[int, ...]]:
    """Compare the weights file's keys and shapes with those the config implies; return the file's shapes."""
    name = path.name
    if not path.is_file():
        problems.append(f"{name} is missing")
        return {}
    import torch

    from litgpt.checkpoint import CheckpointError, model_state_dict, read_plain

    try:
        state_dict = model_state_dict(read_plain(path, mmap=True))
    except CheckpointError as error:
        problems.append(f"{name} does not load: {error}")
        return {}
    shapes = {key: tuple(value.shape) for key, value in state_dict.items()}
    if config is None:
        return shapes
    from litgpt.model import GPT
    from litgpt.preflight import compare_shapes

    with torch.device("meta"):
        expected = {key: tuple(value.shape) for key, value in GPT(config).state_dict().items()}
    missing, unexpected, different = compare_shapes(expected, shapes)
    if missing:
        problems.append(f"{len(missing)} weight(s) missing from {name}, e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected weight(s) in {name}, e.g. {', '.join(unexpected[:3])}")
    for key, want, have in different:
        problems.append(f"{key} has shape {list(have)}, the config implies {list(want)}")
    return shapes


def _lora_params(config, r: int) -> int:
    """The parameters `finetune_lora --lora_r r` trains (its default layers), counted as training counts them:
    the same LoRA method applied to the model built on the meta device."""
    import torch

    from litgpt.model import GPT
    from litgpt.train.methods import LoRA

    method = LoRA(r=r)
    with torch.device("meta"):
        model = method.transform(GPT(config))
    return sum(p.numel() for name, p in model.named_parameters() if method.is_trainable(name))


def precision_bytes(precision: str) -> Tuple[int, int]:
    """(bytes per weight, bytes per activation) at a Lightning precision; mixed precision keeps 32-bit weights."""
    import torch

    from litgpt.checkpoint import MIXED_PRECISIONS, precision_dtype

    activation = precision_dtype(precision, torch.device("cpu")).itemsize
    return (4 if precision in MIXED_PRECISIONS else activation), activation


def memory_estimate(config, n_params: int, precision: str, training: bool, lora_r: int) -> List[str]:
    """Lines estimating inference (and training) memory; activations are left out of the training figures."""
    gib = 1024**3
    weight_bytes, activation_bytes = precision_bytes(precision)
    kv_bytes = 2 * config.n_layer * config.n_query_groups * config.head_size * config.block_size * activation_bytes
    lines = [
        f"Parameters: {n_params:,}",
        f"Inference at {precision}: weights {n_params * weight_bytes / gib:.2f} GiB"
        f" + KV cache for one sequence of {config.block_size} tokens {kv_bytes / gib:.2f} GiB",
    ]
    if training:
        # AdamW keeps two states per trainable parameter, in the parameters' dtype; mixed precision adds a 16-bit copy
        full = n_params * weight_bytes * 4
        lora = _lora_params(config, lora_r)
        lora_total = n_params * weight_bytes + lora * weight_bytes * 4
        lines.append(f"Full finetuning with AdamW: about {full / gib:.2f} GiB before activations")
        lines.append(f"LoRA (r={lora_r}, {lora:,} trainable) with AdamW: about {lora_total / gib:.2f} GiB before activations")
    return lines

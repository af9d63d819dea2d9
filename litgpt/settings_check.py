"""The allowed range of every numeric setting (`--train.*`, `--eval.*`, `--optimizer.*`, `--data.*` and the
generation flags), in one place. Each `*_problems` function returns one line per problem, naming the flag, the
allowed range and the value given; the commands raise them (`check`), `litgpt validate` lists them.

Bottom layer: imports nothing of the package, so every caller (training, generation, the API) can use it.
"""

import math
import sys
from typing import Any, Dict, List, Optional, Union


def check(problems: List[str]) -> None:
    """Raise one ValueError, on one line, naming every problem."""
    if problems:
        raise ValueError("; ".join(problems))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def number_problem(
    flag: str, value: Any, *, integer: bool = False, low: Optional[float] = None, high: Optional[float] = None,
    low_open: bool = False, high_open: bool = False, optional: bool = False,
) -> Optional[str]:
    """Why `value` is not allowed for `flag` (None if it is), with the allowed range in words."""
    if value is None and optional:
        return None
    kind = "an integer" if integer else "a finite number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    allowed = f"{kind}{' ' + ' and '.join(bounds) if bounds else ''}{' (or unset)' if optional else ''}"
    ok = _is_int(value) if integer else _is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    return None if ok else f"{flag} must be {allowed}, got {value!r}"


def _field(settings: Any, name: str) -> Any:
    return settings.get(name) if isinstance(settings, dict) else getattr(settings, name, None)


# flag name → (integer, low, optional); every bound inclusive
TRAIN_RANGES = {
    "save_interval": (True, 1, True),
    "log_interval": (True, 1, False),
    "global_batch_size": (True, 1, False),
    "micro_batch_size": (True, 1, False),
    "lr_warmup_steps": (True, 0, True),
    "epochs": (True, 1, True),
    "max_tokens": (True, 1, True),
    "max_steps": (True, 1, True),
    "max_seq_length": (True, 1, True),
    "min_lr": (False, 0, False),
}
EVAL_RANGES = {"interval": (True, 1, False), "max_iters": (True, 1, False), "max_new_tokens": (True, 1, True)}


def _ranges(prefix: str, settings: Any, ranges: Dict[str, tuple]) -> List[str]:
    problems = []
    for name, (integer, low, optional) in ranges.items():
        problem = number_problem(f"--{prefix}.{name}", _field(settings, name), integer=integer, low=low, optional=optional)
        if problem:
            problems.append(problem)
    return problems


def train_problems(train: Any) -> List[str]:
    """Problems of the `--train.*` numbers, alone and together."""
    problems = _ranges("train", train, TRAIN_RANGES)
    for problem in (
        number_problem("--train.lr_warmup_fraction", _field(train, "lr_warmup_fraction"), low=0, high=1, optional=True),
        # max_norm <= 0 would scale every gradient by a negative or infinite factor
        number_problem("--train.max_norm", _field(train, "max_norm"), low=0, low_open=True, optional=True),
        number_problem("--train.max_time", _field(train, "max_time"), low=0, low_open=True, optional=True),
    ):
        if problem:
            problems.append(problem)
    micro, total = _field(train, "micro_batch_size"), _field(train, "global_batch_size")
    if not problems and micro > total:
        problems.append(f"--train.global_batch_size ({total}) must not be less than --train.micro_batch_size ({micro})")
    return problems


def warn_train(train: Any) -> None:
    """Settings that LitGPT's own recipes use (config_hub/finetune/phi-2/full.yaml warms up past max_steps), so a
    warning rather than an error: the learning rate then never reaches its peak."""
    warmup, max_steps = _field(train, "lr_warmup_steps"), _field(train, "max_steps")
    if warmup and max_steps and warmup > max_steps:
        print(f"Warning: --train.lr_warmup_steps ({warmup}) exceeds --train.max_steps ({max_steps}): the learning rate never reaches its peak", file=sys.stderr)


def eval_problems(eval: Any) -> List[str]:
    """Problems of the `--eval.*` numbers."""
    problems = _ranges("eval", eval, EVAL_RANGES)
    example = _field(eval, "evaluate_example")
    if _is_int(example) and example < 0:
        problems.append(f"--eval.evaluate_example must be 'first', 'random' or an index >= 0, got {example}")
    return problems


def optimizer_problems(optimizer: Union[str, Dict, None], min_lr: Optional[float] = None) -> List[str]:
    """Problems of the optimizer's numbers (`--optimizer.lr` ...), and of --train.min_lr against the lr."""
    init_args = (optimizer.get("init_args") or {}) if isinstance(optimizer, dict) else {}
    if not isinstance(init_args, dict):
        return [f"--optimizer.init_args must be a mapping, got {init_args!r}"]
    problems = []
    for name, low_open in (("lr", False), ("weight_decay", False), ("eps", True), ("momentum", False)):
        if name in init_args:
            problem = number_problem(f"--optimizer.{name}", init_args[name], low=0, low_open=low_open)
            if problem:
                problems.append(problem)
    betas = init_args.get("betas")
    if betas is not None:
        if not (isinstance(betas, (list, tuple)) and len(betas) == 2):
            problems.append(f"--optimizer.betas must be two numbers >= 0 and < 1, got {betas!r}")
        else:
            problems += [p for p in (number_problem("--optimizer.betas", b, low=0, high=1, high_open=True) for b in betas) if p]
    lr = init_args.get("lr")
    if not problems and _is_number(min_lr) and lr is not None and min_lr > lr:
        problems.append(f"--train.min_lr ({min_lr:g}) must be at most the optimizer's lr ({lr:g})")
    return problems


def data_problems(data: Any) -> List[str]:
    """Problems of the numbers that data modules share (`--data.val_split_fraction`, `--data.num_workers`, ...)."""
    if data is None:
        return []
    problems = []
    checks = (
        ("val_split_fraction", dict(low=0, high=1, low_open=True, high_open=True, optional=True)),
        ("num_workers", dict(integer=True, low=0, optional=True)),
        ("seed", dict(integer=True, optional=True)),
    )
    for name, rules in checks:
        problem = number_problem(f"--data.{name}", _field(data, name), **rules)
        if problem:
            problems.append(problem)
    return problems


def training_problems(train: Any, eval: Any, optimizer: Union[str, Dict, None] = None, data: Any = None,
                      min_lr: bool = True) -> List[str]:
    """Every problem of a training command's numbers; `min_lr` False: the schedule has no --train.min_lr (finetuning)."""
    problems = train_problems(train) + eval_problems(eval) + data_problems(data)
    return problems + optimizer_problems(optimizer, _field(train, "min_lr") if min_lr else None)


def check_training(train: Any, eval: Any, optimizer: Union[str, Dict, None] = None, data: Any = None, min_lr: bool = True) -> None:
    """Raise on any problem of a training command's numbers (one line); warn on doubtful ones."""
    check(training_problems(train, eval, optimizer, data, min_lr))
    warn_train(train)


def generation_problems(
    temperature: Any = 1.0, top_k: Any = None, top_p: Any = 1.0, max_new_tokens: Any = None
) -> List[str]:
    """Problems of the sampling flags; top_p 0 is allowed (greedy, as in LitGPT)."""
    problems = [
        number_problem("temperature", temperature, low=0),
        number_problem("top_k", top_k, integer=True, low=1, optional=True),
        number_problem("top_p", top_p, low=0, high=1),
        number_problem("max_new_tokens", max_new_tokens, integer=True, low=1, optional=True),
    ]
    return [p for p in problems if p]


def check_generation(temperature: Any = 1.0, top_k: Any = None, top_p: Any = 1.0, max_new_tokens: Any = None) -> None:
    """Raise (one line) on sampling flags no sampler accepts."""
    check(generation_problems(temperature, top_k, top_p, max_new_tokens))

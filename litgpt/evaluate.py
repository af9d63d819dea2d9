"""`litgpt evaluate`: run EleutherAI's LM Evaluation Harness (lm-eval) on a checkpoint, write results.json.

    --backend litgpt (default)  lm-eval drives our model directly (`lm_eval_model.LitGPTLM`): no conversion
    --backend hf                the checkpoint is converted to a Hugging Face folder (out_dir/hf) and lm-eval's
                                own HF model runs it: a cross-check of the first
"""

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

LIST_HINT = "list the valid names with `litgpt evaluate list` (or `lm_eval --tasks list`)"


def evaluate(
    checkpoint_dir: Path,
    tasks: Optional[str] = None,
    out_dir: Optional[Path] = None,
    force_conversion: bool = False,
    num_fewshot: Optional[int] = None,
    batch_size: Union[int, str] = 1,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    limit: Optional[float] = None,
    seed: int = 1234,
    save_filepath: Optional[Path] = None,
    access_token: Optional[str] = None,
    confirm_run_unsafe_code: bool = False,
    backend: Literal["litgpt", "hf"] = "litgpt",
    include_path: Optional[Path] = None,
) -> None:
    """Evaluate a model with the LM Evaluation Harness; without --tasks, list the task names.

    Args:
        checkpoint_dir: A checkpoint folder (lit_model.pth, model_config.yaml, tokenizer files), ORG/NAME under
            checkpoints/, or a model name from `litgpt download list` (downloaded when missing).
        tasks: Comma-separated lm-eval task (or group, tag) names, e.g. "hellaswag,truthfulqa_mc2,mmlu"; a path to a
            task YAML file also works.
        out_dir: Where results.json (and, for --backend hf, the converted model in hf/) go; default
            checkpoint_dir/evaluate.
        force_conversion: With --backend hf, convert again even if out_dir/hf already holds a converted model.
        num_fewshot: Number of examples in the few-shot context; default: each task's own.
        batch_size: A positive integer, "auto", or "auto:N" (with --backend litgpt, "auto" starts at 64 and halves
            whenever the device runs out of memory).
        device: "cpu", "cuda", "cuda:1", "mps"; default a GPU if there is one.
        dtype: "float32", "bfloat16" or "float16"; default bf16 on GPUs that have it, else float32.
        limit: At most this many examples per task (a fraction below 1 means that share of each task).
        seed: The random seed (Python, NumPy and torch).
        save_filepath: The results file; default out_dir/results.json.
        access_token: Hugging Face token for gated models, when downloading.
        confirm_run_unsafe_code: Allow tasks that execute model-written code.
        backend: "litgpt" runs our model in lm-eval; "hf" converts it and runs lm-eval's Hugging Face model.
        include_path: A folder of extra task YAML files (lm-eval's --include_path).
    """
    if include_path is not None and not Path(include_path).is_dir():
        raise FileNotFoundError(f"include_path {str(include_path)!r} is not a folder")
    if tasks is None:
        print_task_names(include_path)
        return
    names = [name.strip() for name in tasks.split(",") if name.strip()]
    if not names:
        raise ValueError(f"No task names in --tasks {tasks!r}; {LIST_HINT}")
    _check_batch_size(batch_size)
    if backend not in ("litgpt", "hf"):
        raise ValueError(f"backend must be 'litgpt' or 'hf', got {backend!r}")
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    task_manager, names = load_tasks(names, include_path)

    from litgpt.hub import resolve

    checkpoint_dir = resolve(checkpoint_dir, access_token)  # finds or downloads the folder
    out_dir = Path(out_dir) if out_dir is not None else checkpoint_dir / "evaluate"
    save_filepath = Path(save_filepath) if save_filepath is not None else out_dir / "results.json"
    if backend == "litgpt":
        from litgpt.api import LLM

        model = _litgpt_model(LLM.load(str(checkpoint_dir), distribute=None), batch_size, device, dtype)
    else:
        model = _hf_model(checkpoint_dir, out_dir / "hf", force_conversion, batch_size, device, dtype)

    from lm_eval import simple_evaluate

    seeds = dict.fromkeys(("random_seed", "numpy_random_seed", "torch_random_seed"), seed)  # Python, NumPy, torch
    results = simple_evaluate(
        model=model, tasks=names, num_fewshot=num_fewshot, batch_size=batch_size, device=str(model.device), limit=limit,
        task_manager=task_manager, confirm_run_unsafe_code=confirm_run_unsafe_code, **seeds,
    )
    save_results(results, save_filepath)


def print_task_names(include_path: Optional[Path] = None) -> None:
    """Print every task, group and tag name lm-eval knows (with those under `include_path`), then how to pick some."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(include_path) if include_path else None)
    print("\n".join(manager.all_tasks))
    print(
        "\nPick tasks by name, comma-separated: `litgpt evaluate CHECKPOINT --tasks 'hellaswag,truthfulqa_mc2,mmlu'`."
        "\nTo search for one: `litgpt evaluate list | grep NAME`.",
    )


def load_tasks(names: List[str], include_path: Optional[Path]) -> Tuple[Any, List[str]]:
    """An lm-eval TaskManager that knows every name (glob patterns expanded), and the names; ValueError for unknown ones.

    lm-eval's own tasks take a while to index, so a folder of extra tasks that has them all is used alone.
    """
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        manager = TaskManager(include_path=str(include_path), include_defaults=False)
        expanded, unknown = _resolve_names(manager, names)
        if not unknown:
            return manager, expanded
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    expanded, unknown = _resolve_names(manager, names)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ValueError(f"Unknown lm-eval task{plural} {', '.join(map(repr, unknown))}; {LIST_HINT}")
    return manager, expanded


def save_results(results: Optional[Dict[str, Any]], path: Path) -> None:
    """Write lm-eval's results as JSON to `path` and print its tables."""
    if results is None:  # not the main process of a distributed run
        return
    from lm_eval.utils import make_table

    print(make_table(results))
    if results.get("groups"):
        print(make_table(results, "groups"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    print(f"Saved the results to {path}", file=sys.stderr)


def _resolve_names(manager: Any, names: List[str]) -> Tuple[List[str], List[str]]:
    """The names with glob patterns expanded, and those that match nothing."""
    expanded, unknown = [], []
    for name in names:
        if name in manager.all_tasks or (name.endswith((".yaml", ".yml")) and Path(name).is_file()):
            matches = [name]
        else:
            matches = manager.match_tasks([name]) if any(c in name for c in "*?[") else []
        expanded.extend(m for m in matches if m not in expanded)
        if not matches:
            unknown.append(name)
    return expanded, unknown


def _check_batch_size(batch_size: Union[int, str]) -> None:
    if isinstance(batch_size, int) and batch_size > 0:
        return
    if isinstance(batch_size, str) and (batch_size == "auto" or (batch_size.startswith("auto:") and batch_size[5:].isdigit())):
        return
    raise ValueError(f"batch_size must be a positive integer, 'auto' or 'auto:N', got {batch_size!r}")


def _litgpt_model(llm: Any, batch_size: Union[int, str], device: Optional[str], dtype: Optional[str]) -> Any:
    from litgpt.lm_eval_model import LitGPTLM

    accelerator, devices = _split_device(device)
    llm.distribute(accelerator=accelerator, devices=devices, precision=_precision(dtype))
    return LitGPTLM(llm, batch_size=batch_size)


def _hf_model(
    checkpoint_dir: Path, hf_dir: Path, force_conversion: bool, batch_size: Union[int, str], device: Optional[str], dtype: Optional[str]
) -> Any:
    from litgpt.convert.lit_to_hf import convert_from_litgpt

    if force_conversion or not (hf_dir / "config.json").is_file():  # config.json is written last
        convert_from_litgpt(checkpoint_dir, hf_dir)
    try:
        from lm_eval.models.huggingface import HFLM
    except ImportError as error:
        raise ValueError(f"--backend hf needs lm-eval's Hugging Face extras ({error}); pip install transformers accelerate") from None
    if device is None:
        from litgpt.engine.devices import pick_devices

        device = str(pick_devices(devices=1)[0])
    extra = {} if dtype is None else {"dtype": dtype}
    return HFLM(pretrained=str(hf_dir.resolve()), device=device, batch_size=batch_size, **extra)


def _split_device(device: Optional[str]) -> Tuple[str, Union[int, List[int]]]:
    """("auto", 1) for None, ("cuda", [1]) for "cuda:1", ("cpu", 1) for "cpu"."""
    if device is None:
        return "auto", 1
    kind, _, index = str(device).partition(":")
    if index and not index.isdigit():
        raise ValueError(f"device must look like 'cpu', 'cuda', 'cuda:1' or 'mps', got {device!r}")
    return kind, [int(index)] if index else 1


def _precision(dtype: Optional[str]) -> Optional[str]:
    if dtype is None or dtype == "auto":
        return None
    from litgpt.checkpoint import parse_dtype, precision_name

    return precision_name(parse_dtype(dtype))

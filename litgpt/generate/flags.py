"""The flags of the generation commands (generate, generate_sequentially, generate_tp, generate_speculatively,
chat), each declared once with its type, default and help.

`command(...)` gives a command the signature and the `Args:` docstring of the flags it takes: that is what
jsonargparse reads for the command line (flag names, types, defaults, `--help`). The command's own body takes
one argument, the flags' values as a namespace.
"""

import functools
import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, Optional, Tuple, Union

from litgpt.engine.devices import Accelerator, Devices
from litgpt.quantize import Quantize

REQUIRED = inspect.Parameter.empty
Flag = Tuple[Any, Any, str]  # (type, default or REQUIRED, help)

FLAGS: Dict[str, Flag] = {
    "checkpoint_dir": (
        Path, REQUIRED,
        "A checkpoint folder (lit_model.pth, model_config.yaml, tokenizer files), or ORG/NAME under checkpoints/.",
    ),
    "prompt": (str, "What food do llamas eat?", "The text to complete."),
    "input": (str, "", "The instruction's input, for prompt styles that have a place for one (Alpaca's '### Input:')."),
    "sys_prompt": (Optional[str], None, "The system prompt, for prompt styles that have one."),
    "num_samples": (int, 1, "How many completions to draw."),
    "max_new_tokens": (int, 50, "The most tokens to generate per completion."),
    "top_k": (Optional[int], 50, "Sample only among the k most likely tokens (1 is greedy)."),
    "top_p": (float, 1.0, "Sample only among the most likely tokens whose probabilities add up to top_p."),
    "temperature": (float, 0.8, "Scales the logits: 0 is greedy, higher is more random."),
    "quantize": (
        Quantize, None,
        "bitsandbytes quantization of the weights (CUDA only): bnb.nf4, bnb.nf4-dq, bnb.fp4, bnb.fp4-dq, bnb.int8.",
    ),
    "precision": (Optional[str], None, "bf16-true, 16-true or 32-true; default bf16 on a GPU that has it, else 32-true."),
    "compile": (bool, False, "Compile the decoding step with torch.compile (slower start, faster decoding)."),
    "seed": (int, 1234, "The random seed."),
    "accelerator": (Accelerator, "auto", "cuda, cpu, or auto (cuda when there is a GPU)."),
    "devices": (Devices, "auto", "How many devices to use; auto is every visible GPU."),
}

# `litgpt generate`'s flags in order; "*" starts the keyword-only ones (positional on the command line: those
# without a default)
GENERATE = (
    "checkpoint_dir", "prompt", "*", "sys_prompt", "num_samples", "max_new_tokens", "top_k", "top_p", "temperature",
    "quantize", "precision", "compile", "seed",
)
MULTI_DEVICE = GENERATE + ("accelerator", "devices")


def command(names: Tuple[str, ...], **own: Union[str, Flag]) -> Callable[[Callable], Callable]:
    """Give the decorated `fn(args)` the signature and `Args:` docstring of the flags `names` (see FLAGS).

    Args:
        names: the flags in order; "*" makes the ones after it keyword-only.
        own: per flag, a (type, default, help) of the command's own, or a string that replaces FLAGS' help.

    A call binds its arguments to that signature (defaults filled in) and passes them to `fn` as one namespace.
    """
    flags = {name: _flag(name, own.get(name)) for name in names if name != "*"}
    unused = set(own) - set(flags)
    if unused:
        raise TypeError(f"flags given but not named: {sorted(unused)}")
    kind, parameters = inspect.Parameter.POSITIONAL_OR_KEYWORD, []
    for name in names:
        if name == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
            continue
        annotation, default, _ = flags[name]
        parameters.append(inspect.Parameter(name, kind, default=default, annotation=annotation))
    signature = inspect.Signature(parameters, return_annotation=None)
    args_section = "\n".join(f"    {name}: {help}" for name, (_, _, help) in flags.items())

    def decorate(fn: Callable[[SimpleNamespace], None]) -> Callable:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return fn(SimpleNamespace(**bound.arguments))

        run.__signature__ = signature
        run.__doc__ = f"{inspect.cleandoc(fn.__doc__ or '')}\n\nArgs:\n{args_section}\n"
        return run

    return decorate


def _flag(name: str, own: Union[None, str, Flag]) -> Flag:
    if isinstance(own, tuple):
        return own
    if name not in FLAGS:
        raise TypeError(f"flag {name!r} is not in FLAGS: give its (type, default, help)")
    annotation, default, help = FLAGS[name]
    return annotation, default, help if own is None else own

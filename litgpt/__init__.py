"""litgpt: pretrain, finetune, evaluate, serve and convert large language models.

The public names load lazily so that `import litgpt` (and the CLI's `--help`) does not import torch.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "Config": "litgpt.config",
    "GPT": "litgpt.model",
    "Tokenizer": "litgpt.tokenizer",
    "PromptStyle": "litgpt.prompts",
    "LLM": "litgpt.api",
    "CheckpointValidationResult": "litgpt.preflight",
    "validate_checkpoint": "litgpt.preflight",
    "estimate_model_memory": "litgpt.preflight",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'litgpt' has no attribute {name!r}")

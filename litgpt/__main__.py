"""The `litgpt` command line: one table of subcommands, each a typed function whose docstring is its help.

Modules are imported only for the subcommand that runs (all of them for `litgpt --help`), and they import
torch inside their functions, so help answers at once.
"""

import os
import sys
from importlib import import_module
from typing import Callable, Dict, List, Optional

COMMANDS: Dict[str, str] = {
    "convert_to_litgpt": "litgpt.convert.hf_to_lit:convert_to_litgpt",
    "convert_from_litgpt": "litgpt.convert.lit_to_hf:convert_from_litgpt",
    "convert_pretrained_checkpoint": "litgpt.convert.pretrained:convert_pretrained_checkpoint",
    "validate": "litgpt.validate:validate",
    "download": "litgpt.hub:download",
    "generate": "litgpt.generate.cli:generate",
    "generate_full": "litgpt.generate.cli:generate_full",
    "generate_adapter": "litgpt.generate.cli:generate_adapter",
    "generate_adapter_v2": "litgpt.generate.cli:generate_adapter_v2",
    "generate_speculatively": "litgpt.generate.speculative:generate_speculatively",
    "generate_sequentially": "litgpt.generate.sequentially:generate_sequentially",
    "generate_tp": "litgpt.generate.tp:generate_tp",
    "chat": "litgpt.chat:chat",
    "pretrain": "litgpt.train.pretrain:setup",
    "finetune": "litgpt.train.finetune:finetune",
    "finetune_lora": "litgpt.train.finetune:finetune_lora",
    "finetune_full": "litgpt.train.finetune:finetune_full",
    "finetune_adapter": "litgpt.train.finetune:finetune_adapter",
    "finetune_adapter_v2": "litgpt.train.finetune:finetune_adapter_v2",
    "merge_lora": "litgpt.merge_lora:merge_lora",
    "evaluate": "litgpt.evaluate:evaluate",
    "serve": "litgpt.serve:serve",
}


# Commands whose first argument may be given bare although it is optional (`litgpt pretrain tiny-llama-1.1b`,
# `litgpt pretrain list`); jsonargparse makes only arguments without a default positional.
OPTIONAL_POSITIONAL = {"pretrain": "model_name"}


def _config_first(argv: List[str]) -> List[str]:
    """Move `--config FILE` right after the command: jsonargparse applies arguments in order, and what the
    user types beside a recipe (a checkpoint folder, a flag) must win over the recipe's values."""
    if not argv:
        return argv
    configs, rest, i = [], [argv[0]], 1
    while i < len(argv):
        if argv[i] == "--config" and i + 1 < len(argv):
            configs += argv[i : i + 2]
            i += 2
        elif argv[i].startswith("--config="):
            configs.append(argv[i])
            i += 1
        else:
            rest.append(argv[i])
            i += 1
    return [rest[0], *configs, *rest[1:]]


def _load(target: str) -> Callable:
    module, name = target.split(":")
    return getattr(import_module(module), name)


def _user_errors() -> tuple:
    """Exception types that mean bad input rather than a bug; printed as one line."""
    kinds = [FileNotFoundError, NotADirectoryError, PermissionError, ConnectionError, ValueError, NotImplementedError]
    try:
        from litgpt.checkpoint import CheckpointError

        kinds.append(CheckpointError)
    except ImportError:
        pass
    return tuple(kinds)


def main(argv: Optional[List[str]] = None) -> None:
    from jsonargparse import auto_cli, set_parsing_settings

    set_parsing_settings(config_read_mode_urls_enabled=True)  # `--config https://...` as LitGPT allows

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 and argv[0] in OPTIONAL_POSITIONAL and not argv[1].startswith("-"):
        argv = [argv[0], f"--{OPTIONAL_POSITIONAL[argv[0]]}", *argv[1:]]
    argv = _config_first(argv)
    chosen = {argv[0]: COMMANDS[argv[0]]} if argv and argv[0] in COMMANDS else COMMANDS
    components = {name: _load(target) for name, target in chosen.items()}
    try:
        auto_cli(components, args=argv, as_positional=True, prog="litgpt")
    except KeyboardInterrupt as interrupt:
        if str(interrupt):  # training says where its last checkpoint is and how to resume
            print(interrupt, file=sys.stderr)
        sys.exit(130)
    except _user_errors() as error:
        if os.environ.get("LITGPT_DEBUG"):
            raise
        command = argv[0] if argv else "litgpt"
        print(f"litgpt {command}: error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

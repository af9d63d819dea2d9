"""The `litgpt` command line: one table of subcommands, each a typed function whose docstring is its help.

Modules are imported only for the subcommand that runs (all of them for `litgpt --help`), and they import
torch inside their functions, so help answers at once.
"""

import json
import os
import re
import sys
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

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
    "finetune_dpo": "litgpt.train.dpo:finetune_dpo",
    "merge_lora": "litgpt.merge_lora:merge_lora",
    "evaluate": "litgpt.evaluate:evaluate",
    "serve": "litgpt.serve:serve",
}


# Commands whose first argument may be given bare although it is optional (`litgpt pretrain tiny-llama-1.1b`,
# `litgpt pretrain list`); jsonargparse makes only arguments without a default positional.
OPTIONAL_POSITIONAL = {"pretrain": "model_name"}


def _arguments(argv: List[str]) -> Iterator[Tuple[int, Optional[str], str]]:
    """argv after the command as (index, flag name without "--" or None for a bare word, value): a flag takes the
    next word as its value unless it is `--flag=value` or a help flag."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            yield i, None, arg
            i += 1
        elif "=" in arg:
            name, value = arg.split("=", 1)
            yield i, name.lstrip("-"), value
            i += 1
        elif arg in ("-h", "--help"):
            yield i, arg.lstrip("-"), ""
            i += 1
        else:
            yield i, arg.lstrip("-"), argv[i + 1] if i + 1 < len(argv) else ""
            i += 2


def _bare_positional(argv: List[str], name: str) -> List[str]:
    """`litgpt pretrain --config debug.yaml pythia-14m`: the first bare word after the command, wherever it stands
    (not a flag's value), as `--name WORD` (jsonargparse takes only arguments without a default as positionals)."""
    i = next((i for i, flag, _ in _arguments(argv) if flag is None), None)
    return argv if i is None else [*argv[:i], f"--{name}", *argv[i:]]


def _note_overridden(argv: List[str], function: Callable) -> None:
    """jsonargparse applies arguments in order, as LitGPT does: a --config file overrides what was typed before it.
    Say so on stderr when it changes a value typed there (a local file's top-level keys; a URL is not read here)."""
    import inspect

    from jsonargparse import get_loader

    typed: Dict[str, str] = {}
    positional = next((p.name for p in inspect.signature(function).parameters.values() if p.default is p.empty), None)
    for _, flag, value in _arguments(argv):
        if flag == "config":
            try:
                loaded = get_loader("yaml")(Path(value).read_text(encoding="utf-8"))
            except (OSError, ValueError, TypeError):
                loaded = None  # jsonargparse reports what is wrong with it
            for key, before in typed.items():
                found = _lookup(loaded, key.split("."))
                if found is not None and not _same(key, before, found):
                    print(f"litgpt {argv[0]}: note: --config {value} sets {key}: {found}, replacing {before!r} typed "
                          f"before it (arguments after --config override the file)", file=sys.stderr)
            typed = {}
        elif flag is not None or positional is not None:
            typed[flag or positional] = value


def _same(key: str, typed: str, found: Any) -> bool:
    """Whether a value typed and one from a file mean the same; a bare ORG/NAME is the folder checkpoints/ORG/NAME."""
    if str(found) == typed:
        return True

    def folder(path: Path) -> Path:
        return path if path.is_absolute() or path.parts[:1] == ("checkpoints",) else Path("checkpoints") / path

    return key.endswith("_dir") and folder(Path(typed)) == folder(Path(str(found)))


def _lookup(loaded: Any, keys: List[str]) -> Any:
    """loaded[k1][k2]... for a nested YAML mapping; None where a key is missing."""
    for key in keys:
        if not isinstance(loaded, dict) or key not in loaded:
            return None
        loaded = loaded[key]
    return loaded


def _flag_values(argv: List[str], prefix: str) -> Tuple[List[Tuple[str, str]], List[str]]:
    """Split `--PREFIX...` flags (with a separate or `=` value) out of argv: ([(flag, value)], the rest)."""
    found, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name == prefix or name.startswith(prefix + "."):
            if "=" in arg:
                found.append((name, arg.split("=", 1)[1]))
            elif i + 1 < len(argv):
                found.append((name, argv[i + 1]))
                i += 1
            else:
                found.append((name, ""))
        else:
            rest.append(arg)
        i += 1
    return found, rest


def _configured_optimizer(argv: List[str], needed: bool) -> Any:
    """The optimizer named by the --config files in argv (the last one wins), or None. A URL is not read here
    (jsonargparse reads it); when the flags do not name the optimizer, that is an error."""
    from jsonargparse import get_loader

    spec = None
    for _, value in _flag_values(argv, "--config")[0]:
        if "://" in value:
            if needed:
                raise ValueError(f"--optimizer.*: name the optimizer too (--optimizer AdamW) when --config is a URL ({value})")
            continue
        try:
            loaded = get_loader("yaml")(Path(value).read_text(encoding="utf-8"))
        except OSError:
            continue  # jsonargparse reports the missing file
        if isinstance(loaded, dict) and loaded.get("optimizer") is not None:
            spec = loaded["optimizer"]
    return spec


def _optimizer_flags(argv: List[str]) -> List[str]:
    """Fold `--optimizer AdamW --optimizer.lr 0.005` and `--optimizer.class_path torch.optim.AdamW
    --optimizer.init_args.lr 0.005` into the one `--optimizer {class_path, init_args}` value the commands take;
    what the flags leave out comes from the --config file's optimizer (or AdamW)."""
    found, rest = _flag_values(argv, "--optimizer")
    given = [flag for flag, _ in found]
    if all(flag == "--optimizer" for flag in given) and not any(value.lstrip().startswith("{") for _, value in found):
        return argv  # none, or a plain --optimizer NAME: jsonargparse reads it as it is
    from jsonargparse import get_loader

    load = get_loader("yaml")
    names = [load(value) for flag, value in found if flag == "--optimizer"]
    class_paths = [value for flag, value in found if flag == "--optimizer.class_path"]
    configured = _as_spec(_configured_optimizer(argv, needed=not (names or class_paths)) or "AdamW")
    spec = _as_spec(names[-1] if names else configured)
    if class_paths:
        spec["class_path"] = class_paths[-1]
    if _short(spec["class_path"]) == _short(configured["class_path"]):  # the same class: keep the recipe's arguments
        spec["init_args"] = {**configured["init_args"], **spec["init_args"]}
    for flag, value in found:
        key = flag[len("--optimizer.") :]
        if flag in ("--optimizer", "--optimizer.class_path"):
            continue
        if key == "init_args":
            init_args = load(value)
            if not isinstance(init_args, dict):
                raise ValueError(f"--optimizer.init_args takes a mapping such as '{{\"lr\": 0.001}}', got {value!r}")
            spec["init_args"].update(init_args)
        else:
            spec["init_args"][key.removeprefix("init_args.")] = load(value)
    # the name first: jsonargparse fails on a {class_path} value that follows one from a --config file
    return [*rest, "--optimizer", spec["class_path"], "--optimizer", json.dumps(spec)]


def _short(class_path: str) -> str:
    """`torch.optim.AdamW` and `AdamW` name the same class."""
    return class_path[len("torch.optim.") :] if class_path.startswith("torch.optim.") else class_path


def _as_spec(optimizer: Any) -> Dict[str, Any]:
    if isinstance(optimizer, dict):
        return {"class_path": optimizer.get("class_path", "AdamW"), "init_args": dict(optimizer.get("init_args") or {})}
    return {"class_path": str(optimizer), "init_args": {}}


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

    from litgpt.cli_parser import Parser

    # `--config https://...` as LitGPT allows; help for `--train.*` and data modules' flags from attribute docstrings
    set_parsing_settings(config_read_mode_urls_enabled=True, docstring_parse_attribute_docstrings=True)

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in OPTIONAL_POSITIONAL:
        argv = _bare_positional(argv, OPTIONAL_POSITIONAL[argv[0]])
    chosen = {argv[0]: COMMANDS[argv[0]]} if argv and argv[0] in COMMANDS else COMMANDS
    components = {name: _load(target) for name, target in chosen.items()}
    if argv and argv[0] in components:
        _note_overridden(argv, components[argv[0]])
    try:
        argv = _optimizer_flags(argv)
        auto_cli(components, args=argv, as_positional=True, prog="litgpt", parser_class=Parser)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except BrokenPipeError:
        # the reader stopped (`litgpt evaluate list | head`): end quietly, as `ls | head` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
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
    except Exception as error:
        unreadable = _unreadable_url(error)
        if unreadable is None or os.environ.get("LITGPT_DEBUG"):
            raise
        print(f"litgpt {argv[0] if argv else 'litgpt'}: error: {unreadable}", file=sys.stderr)
        sys.exit(1)


def _unreadable_url(error: Exception) -> Optional[str]:
    """One line for a `--config https://...` that could not be fetched (requests' error, raised through
    jsonargparse), naming the URL and the deepest cause; None for any other error."""
    requests = sys.modules.get("requests")
    if requests is None or not isinstance(error, requests.RequestException):
        return None
    request = getattr(error, "request", None)
    url = getattr(request, "url", None) or "the URL"
    cause: BaseException = error
    while cause.__cause__ is not None or (cause.args and isinstance(cause.args[0], BaseException)):
        cause = cause.__cause__ or cause.args[0]
    text = str(cause)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    reason = errno.group(1) if errno else text.splitlines()[0] if text else type(cause).__name__
    return f"--config {url} cannot be read: {reason.strip()} (check the address and the network, or give a local file)"


if __name__ == "__main__":
    main()

"""The argument parser of the `litgpt` command line: jsonargparse's, with whole flag names only and errors in one
line that name the flag and, for a misspelt one, the flag that was probably meant."""

import difflib
import re
import sys
from importlib import import_module
from typing import Iterable, List, NoReturn, Optional, Union

from jsonargparse import ArgumentParser

_KEY = re.compile(r'Parser key "([^"]+)":')
_CLASS_PATH = re.compile(r"Problem with given class_path '([\w.]+)':")
_NOT_ACCEPTED = re.compile(r"Option '([\w.]+)' is not accepted")
_BASE_CLASS = re.compile(r"Subtypes: \[<class '([\w.]+)'>")


class Parser(ArgumentParser):
    """Refuses abbreviated flags (`--train.max_st 5` would otherwise set `--train.max_steps`) and reports a bad
    command line in one line instead of the usage text and jsonargparse's internals."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Optional[Exception] = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse parses nested values with throw-away parsers that must raise
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        listed = "commands" if message.startswith("argument subcommand") else "flags"
        print(f"{prog}: error: {explain(parser, message)} (`{prog} --help` lists the {listed})", file=sys.stderr)
        sys.exit(2)


def explain(parser: ArgumentParser, message: str) -> str:
    """One line for jsonargparse's error `message` about `parser`'s command line."""
    message = message.strip()
    if message.startswith("unrecognized arguments:"):
        given = message.split(":", 1)[1].split()
        flags = [g for g in given if g.startswith("-")]
        if not flags:
            return f"unexpected argument {given[0]!r}" if given else message
        name = flags[0].split("=", 1)[0]
        return f"unknown flag {name}{_suggest(name, _flags(parser))}"
    if message.startswith("argument subcommand: invalid choice:"):
        given = re.search(r"invalid choice: '([^']*)'", message)
        name = given.group(1) if given else "?"
        commands = next((a.choices for a in parser._actions if getattr(a, "choices", None) and a.dest == "subcommand"), {})
        return f"unknown command {name!r}{_suggest(name, commands)}"
    config_key = re.match(r"Subcommand '(\w+)' does not accept option '([\w.]+)'", message)
    if config_key:  # a key of a --config file
        name, key_name = config_key.groups()
        commands = next((a.choices for a in parser._actions if isinstance(getattr(a, "choices", None), dict)), {})
        keys = [f[2:] for f in _flags(commands.get(name, parser))]
        return f"unknown key {key_name!r} in the --config file{_suggest(key_name, keys)}"
    key = _KEY.match(message)
    if key is None:
        return " ".join(line.strip() for line in message.splitlines() if line.strip())
    return _explain_value(f"--{key.group(1)}", message)


def _explain_value(flag: str, message: str) -> str:
    """One line for a value that jsonargparse refused for `flag`."""
    not_accepted, class_path = _NOT_ACCEPTED.search(message), _CLASS_PATH.search(message)
    if not_accepted and class_path:  # a nested flag the chosen class does not take (`--data.train_data_pat`)
        name = f"{flag}.{not_accepted.group(1)}"
        takers = [c.__name__ for c in _subclasses(class_path.group(1))[1:] if not_accepted.group(1) in _parameters(c)]
        if takers:  # the flags of a class given before the class (`--data.json_path x` without `--data JSON`)
            return f"{name} needs {flag} NAME before it, NAME one of {', '.join(sorted(set(takers)))}"
        return f"unknown flag {name}{_suggest(name, [f'{flag}.{p}' for p in _parameters(class_path.group(1))])}"
    nested = re.search(r"Parser key \"([^\"]+)\":\s*\n\s*(.+)", message[message.find("class_path") :]) if class_path else None
    if nested:  # a nested flag with a bad value (`--data.mask_prompt maybe`)
        return f"{flag}.{nested.group(1)}: {_expected(nested.group(2))}"
    dotted = re.search(r"Expected a dot import path string: (\S+)", message)
    base = _BASE_CLASS.search(message)
    if dotted and base:  # a class name that is not one of the known ones (`--data TextFile`)
        names = [cls.__name__ for cls in _subclasses(base.group(1))]
        return f"{flag}: unknown name {dotted.group(1)!r}{_suggest(dotted.group(1), names)}"
    expected = re.findall(r"Expected an? (.+)", message)
    given = re.search(r"Given value: (.*)", message)
    if expected and given:
        kinds = " or ".join(_type_name(e) for e in expected)
        return f"{flag}: expected {kinds}; got {given.group(1).strip()!r}"
    details = [_KEY.sub("", line).strip(" -") for line in message.splitlines()[1:] if _KEY.sub("", line).strip(" -")]
    return f"{flag}: {_expected(details[-1]) if details else 'invalid value'}"


def _expected(line: str) -> str:
    """jsonargparse's 'Expected a <class 'bool'>. Got value: maybe' as 'expected bool, got 'maybe''."""
    match = re.match(r"Expected an? (.+?)\. Got value: (.*)", line.strip())
    if match is None:
        return line.strip()
    return f"expected {_type_name(match.group(1))}; got {match.group(2)!r}"


def _type_name(text: str) -> str:
    literal = re.match(r"typing\.Literal\[(.*)\]", text.strip())
    if literal:
        return "one of " + ", ".join(v.strip(" '\"") for v in literal.group(1).split(","))
    named = re.match(r"<class '([\w.]+)'>", text.strip())
    name = named.group(1).rsplit(".", 1)[-1] if named else text.strip()
    return "null" if name == "NoneType" else name


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _flags(parser: ArgumentParser) -> List[str]:
    return [s for action in parser._actions for s in action.option_strings if s.startswith("--")]


def _parameters(cls: Union[str, type]) -> List[str]:
    import inspect

    try:  # a class path names a class that the parser that refused the flag imported already
        if isinstance(cls, str):
            module, name = cls.rsplit(".", 1)
            cls = getattr(import_module(module), name)
        return list(inspect.signature(cls).parameters)
    except (ImportError, AttributeError, ValueError, TypeError):
        return []


def _subclasses(class_path: str) -> list:
    module, name = class_path.rsplit(".", 1)
    try:
        todo, found = [getattr(import_module(module), name)], []
    except (ImportError, AttributeError):
        return []
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found

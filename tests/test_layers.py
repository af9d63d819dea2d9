"""The package's imports run only downhill (DESIGN.md, "Layers"), and go in no circle.

Every `import litgpt...` / `from litgpt... import ...` is read with `ast`, at module level and inside
functions alike (a function-level import is still a dependency, just a later one). Imports under
`if TYPE_CHECKING:` are type hints only and are skipped.
"""

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import litgpt

PACKAGE = Path(litgpt.__file__).parent

# Layer of each module (a dotted prefix; the longest matching prefix wins). 0 = files and math,
# 1 = the engine (and the training loop, data), 2 = what users call (commands, the API, the server).
LAYERS: Dict[str, int] = {
    "litgpt": 0,  # __init__: the public names, loaded lazily
    "litgpt.config": 0,
    "litgpt.model": 0,
    "litgpt.lora": 0,
    "litgpt.adapter": 0,
    "litgpt.tokenizer": 0,
    "litgpt.prompts": 0,
    "litgpt.checkpoint": 0,
    "litgpt.finetuned": 0,
    "litgpt.convert": 0,
    "litgpt.hub": 0,
    "litgpt.quantize": 0,
    "litgpt.loss": 0,
    "litgpt.settings_check": 0,
    "litgpt.preflight": 0,  # validate_checkpoint, estimate_model_memory (exported by `import litgpt`)
    "litgpt.cli_parser": 0,
    "litgpt.engine": 1,
    "litgpt.data": 1,
    "litgpt.train": 1,
    "litgpt.train.loop": 1,
    "litgpt.train.methods": 1,
    "litgpt.train.monitor": 1,
    "litgpt.train.args": 1,
    "litgpt.train.finetune": 2,
    "litgpt.train.pretrain": 2,
    "litgpt.train.dpo": 2,  # `litgpt finetune_dpo`
    "litgpt.__main__": 2,
    "litgpt.api": 2,
    "litgpt.generate": 2,
    "litgpt.chat": 2,
    "litgpt.evaluate": 2,
    "litgpt.lm_eval_model": 2,
    "litgpt.serve": 2,
    "litgpt.serve_api": 2,
    "litgpt.validate": 2,
    "litgpt.merge_lora": 2,
}


def layer_of(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{module} has no layer in tests/test_layers.py's LAYERS; add it")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, modules: Set[str]) -> List[Tuple[str, int]]:
    """(imported litgpt module, line) for every import in the file, at any depth."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: List[Tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names if alias.name.startswith("litgpt"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("litgpt"):
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.append((sub if sub in modules else base, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def import_graph() -> Dict[str, Dict[str, int]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph: Dict[str, Dict[str, int]] = {}
    for path in files:
        edges = graph.setdefault(module_name(path), {})
        for target, line in imports_of(path, modules):
            target = _known(target, modules)
            if target and target != module_name(path):
                edges.setdefault(target, line)
    return graph


def _known(target: str, modules: Set[str]) -> Optional[str]:
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def test_every_module_has_a_layer():
    for module in import_graph():
        layer_of(module)


def test_imports_run_downhill():
    uphill = []
    for module, edges in import_graph().items():
        for target, line in edges.items():
            if target == "litgpt":  # the package's own lazy public names
                continue
            if layer_of(target) > layer_of(module):
                uphill.append(f"{module}:{line} imports {target} (layer {layer_of(module)} -> {layer_of(target)})")
    assert not uphill, "imports from a lower layer into a higher one:\n" + "\n".join(sorted(uphill))


def _cycles(graph: Dict[str, Dict[str, int]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w == "litgpt":
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_no_import_circles():
    circles = _cycles(import_graph())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_checker_sees_function_level_imports_and_circles():
    # the test's own machinery must be able to fail: a function-level import makes an edge, a circle is found
    graph = {"litgpt.a": {"litgpt.b": 1}, "litgpt.b": {"litgpt.a": 3}, "litgpt.c": {"litgpt.a": 1}}
    assert _cycles(graph) == [["litgpt.a", "litgpt.b"]]
    source = PACKAGE / "generate" / "cli.py"
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    assert any(target.startswith("litgpt.") for target, _ in imports_of(source, modules))


COMMANDS = ("litgpt.__main__", "litgpt.generate", "litgpt.chat", "litgpt.evaluate", "litgpt.lm_eval_model", "litgpt.serve",
            "litgpt.serve_api", "litgpt.validate", "litgpt.merge_lora", "litgpt.train.finetune", "litgpt.train.pretrain", "litgpt.train.dpo")


def test_the_api_imports_no_command_module():
    # LLM sits beside the commands on the top layer; the commands build on it, never the other way
    reached = [t for t in import_graph()["litgpt.api"] if any(t == c or t.startswith(c + ".") for c in COMMANDS)]
    assert not reached, f"litgpt.api imports command modules: {reached}"


MAX_FUNCTION_LINES = 80


def code_lines(source: str) -> Set[int]:
    """The numbers of the lines that hold code: not blank, and covered by a token other than a comment or a line
    break (so a line of a multi-line string counts, whatever it starts with)."""
    import io
    import tokenize

    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    lines: Set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            lines.update(range(token.start[0], token.end[0] + 1))
    text = source.splitlines()
    return {line for line in lines if line <= len(text) and text[line - 1].strip()}


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> List[Tuple[str, int, int]]:
    """(name, line, lines of code) of each function whose body, from the first statement after its docstring to
    its end, holds more than `limit` lines of code (blank and comment-only lines not counted)."""
    lines = code_lines(source)
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            body = body[1:]
        if body:
            count = sum(1 for line in lines if body[0].lineno <= line <= node.end_lineno)
            if count > limit:
                found.append((node.name, node.lineno, count))
    return found


def test_no_function_has_over_80_lines_of_code():
    too_long = [f"{path.relative_to(PACKAGE.parent)}:{line} {name} ({count} lines)"
                for path in sorted(PACKAGE.rglob("*.py")) for name, line, count in long_functions(path.read_text())]
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines of code (split them into named steps):\n" + "\n".join(too_long)


def test_the_length_check_counts_code_not_docstrings_or_comments():
    body = "".join(f"    x{i} = {i}  # note\n\n    # a comment\n" for i in range(80))
    source = f'def f():\n    """A docstring\n\n    of several lines."""\n{body}'
    assert long_functions(source) == []
    assert long_functions(source + "    return x0\n") == [("f", 1, 81)]
    assert long_functions('def g():\n    s = """\n' + "# data, not a comment\n\n" * 90 + '"""\n') == [("g", 1, 92)]

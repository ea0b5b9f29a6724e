"""The house rules of the code: sizes a person reads in one sitting, no import circle, and a
first docstring line that says what each module is.

Limits (docstrings not counted): a function 60 lines (a cell factory in rnnlab/cells/ 80), a
class 150, a module 400, over rnnlab/ and launch/. An import circle is counted over every
import a module makes, at its top or inside a function: an import hidden in a function to break
a circle still runs both ways.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("rnnlab", "launch")
LIMITS = {"function": 60, "class": 150, "module": 400}
CELL_FACTORY_LIMIT = 80

# Known excesses (none today): each may shrink, none may grow, and nothing else may pass a limit.
KNOWN: dict[str, int] = {}
KNOWN_CIRCLES: list = []


def _sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(), filename=str(path))


def _docstring_lines(node) -> int:
    body = getattr(node, "body", None)
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        return body[0].end_lineno - body[0].lineno + 1
    return 0


def _defs(node):
    return [n for n in ast.walk(node)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def _size(node) -> int:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return node.end_lineno - start + 1 - sum(_docstring_lines(n) for n in _defs(node))


def sizes():
    """{name: (kind, lines)} of every module, class and function of rnnlab/ and launch/."""
    out = {}
    for path, tree in _sources():
        name = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        out[name] = ("module", lines - _docstring_lines(tree) - sum(
            _docstring_lines(n) for n in _defs(tree)))
        for node in _defs(tree):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            out[f"{name}:{node.lineno}:{node.name}"] = (kind, _size(node))
    return out


def _limit(name: str, kind: str) -> int:
    if kind == "function" and name.startswith("rnnlab/cells/"):
        return CELL_FACTORY_LIMIT
    return LIMITS[kind]


def _key(name: str) -> str:
    """A name without its line number, so that a known excess survives edits above it."""
    parts = name.split(":")
    return f"{parts[0]}:{parts[2]}" if len(parts) == 3 else name


def test_nothing_is_longer_than_one_sitting():
    grown = {}
    for name, (kind, lines) in sizes().items():
        if lines > KNOWN.get(_key(name), _limit(name, kind)):
            grown[_key(name)] = max(lines, grown.get(_key(name), 0))
    assert not grown, "past the house's size limits (lines without docstrings): " + ", ".join(
        f"{k} {v}" for k, v in sorted(grown.items(), key=lambda kv: -kv[1]))


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports() -> dict[str, set[str]]:
    """{module: the project modules it imports, anywhere in its code}."""
    modules = {_module_name(p): (p, t) for p, t in _sources()}
    graph = {}
    for name, (path, tree) in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                    + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in modules else base)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    graph = imports()
    # A package's __init__ re-exporting its own modules is not a circle of concepts.
    for name in graph:
        graph[name] = {m for m in graph[name] if not (name.startswith(m + ".") and
                                                       m in graph)}
    assert _cycles(graph) == KNOWN_CIRCLES


def test_every_module_says_what_it_is():
    missing = [path.relative_to(ROOT).as_posix() for path, tree in _sources()
               if not (ast.get_docstring(tree) or "").strip()]
    assert not missing, f"modules without a docstring: {missing}"


def test_the_checks_can_fail(tmp_path):
    """The measures themselves, on a known piece of code."""
    source = '"""Doc."""\n\ndef f():\n    """Two\n    lines."""\n' + "    x = 1\n" * 70
    tree = ast.parse(source)
    (fn,) = _defs(tree)
    assert _size(fn) == 71
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]

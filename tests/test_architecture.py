"""The house rules that keep p2ptools easy to change, checked on the code itself (issue #26): no import
cycles (imports inside functions count), no function over 60 lines (its docstring not counted), none
outside ``cli/`` with more than 8 parameters, and every ``click.Choice`` taking its list from a registry."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "p2ptools"
MAX_LINES, MAX_PARAMS = 60, 8


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"), str(p))) for p in sorted(PACKAGE.rglob("*.py"))]


def _functions(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the ``def`` to the function's end, less its docstring."""
    lines = fn.end_lineno - fn.lineno + 1
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    return len([n for n in names if n not in ("self", "cls")])


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (import cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_even_inside_functions():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the dev extra)")
    graph = grimp.build_graph("p2ptools")  # every import statement, those inside functions too
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles = _strongly_connected(edges)
    assert not cycles, "\n".join(" ↔ ".join(c) for c in cycles)


def test_the_layout_page_names_every_module():
    """docs/concepts/layout.md maps the tree: every module and package of p2ptools is named there."""
    page = (PACKAGE.parent / "docs" / "concepts" / "layout.md").read_text(encoding="utf-8")
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name in ("__init__.py", "__main__.py"):
            continue
        if not re.search(rf"(?<![\w/]){re.escape(rel.name)}(?!\w)", page):
            missing.append(str(rel))
    for folder in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        if f"{folder.name}/" not in page:
            missing.append(f"{folder.name}/")
    assert not missing, f"not in docs/concepts/layout.md: {', '.join(missing)}"


def test_the_command_line_starts_without_torch():
    """``p2ptools --help`` loads every command's module (for their one-line help): none of them may import
    torch at module level (4-5 s), so choices come from torch-free registries."""
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from p2ptools.cli.main import cli; "
            "assert CliRunner().invoke(cli, ['--help']).exit_code == 0; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_function_over_60_lines():
    long = [f"{p.relative_to(PACKAGE.parent)}:{fn.lineno} {fn.name} ({_body_lines(fn)})"
            for p, tree in _modules() for fn in _functions(tree) if _body_lines(fn) > MAX_LINES]
    assert not long, "\n".join(long)


def test_no_function_outside_the_cli_takes_more_than_8_parameters():
    wide = [f"{p.relative_to(PACKAGE.parent)}:{fn.lineno} {fn.name} ({_params(fn)})"
            for p, tree in _modules() if "cli" not in p.relative_to(PACKAGE).parts[:1]
            for fn in _functions(tree) if _params(fn) > MAX_PARAMS]
    assert not wide, "\n".join(wide)


def test_every_click_choice_takes_its_list_from_a_registry():
    literal = []
    for p, tree in _modules():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "Choice"
                    and node.args and isinstance(node.args[0], (ast.List, ast.Tuple, ast.Set))):
                literal.append(f"{p.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not literal, "\n".join(literal)

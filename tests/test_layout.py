"""The package's shape (README's Layout): layers import downwards, no library module imports a command, no file is
a maze."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "srexp"
MODULES = sorted(p for p in PKG.rglob("*.py"))


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m == "srexp" or m.startswith("srexp.")}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_library_module_imports_a_command(path):
    if module_name(path).startswith("srexp.cli"):
        return
    bad = sorted(m for m in imports(path) if m.startswith("srexp.cli"))
    assert not bad, f"{module_name(path)} imports the command layer: {bad}"


@pytest.mark.parametrize("path", [p for p in MODULES if p.parent.name == "ops"], ids=lambda p: p.name)
def test_ops_is_the_bottom_layer(path):
    above = sorted(m for m in imports(path) if not (m.startswith("srexp.ops") or m in ("srexp", "srexp.errors")))
    assert not above, f"{module_name(path)} imports {above}"


def test_no_file_over_400_lines_and_a_small_root():
    long = {str(p.relative_to(PKG)): n for p in MODULES if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
    assert sorted(p.name for p in PKG.glob("*.py")) == ["__init__.py", "errors.py"]

"""The package layering holds: every import statement (lazy ones inside functions too) is
read from the source, so a new edge shows up here, not in a later refactor."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SIBLINGS = ("pipelines", "harmonization", "modnet")


def _imports(path: Path) -> set[str]:
    """Top-level package names imported anywhere in ``path`` (absolute imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _files(package: str, skip: str | None = None) -> list[Path]:
    """The package's modules; ``skip``: a sub-package (and ``__main__``, the entry point)."""
    files = sorted((ROOT / package).rglob("*.py"))
    return [
        p
        for p in files
        if skip is None or (skip not in p.relative_to(ROOT).parts and p.name != "__main__.py")
    ]


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def _offenders(files: list[Path], banned: tuple[str, ...]) -> list[str]:
    out = []
    for p in files:
        for name in sorted(_imports(p)):
            if name.split(".")[0] in banned:
                out.append(f"{_rel(p)} imports {name}")
    return out


def test_core_imports_no_sibling_package() -> None:
    """matdata/ (all but matdata/cli, the one place that wires packages together, and the
    ``python -m matdata`` entry point) never imports pipelines, harmonization or modnet."""
    files = _files("matdata", skip="cli")
    assert len(files) > 20
    assert _offenders(files, SIBLINGS) == []


@pytest.mark.parametrize("package", ["pipelines", "harmonization", "modnet"])
def test_nothing_below_the_cli_imports_it(package: str) -> None:
    files = _files(package) + _files("matdata", skip="cli")
    bad = [
        f"{_rel(p)} imports {n}"
        for p in files
        for n in _imports(p)
        if n == "matdata.cli" or n.startswith("matdata.cli.")
    ]
    assert bad == []


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from modnet.train import Trainer\n    import pipelines.build\n")
    assert _offenders([src], SIBLINGS) != [] and len(_offenders([src], SIBLINGS)) == 2

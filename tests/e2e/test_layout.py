"""One room per role (docs/architecture.md, "Where things are"): which package may import which,
and no import cycle between modules. Read from the source (every import, also those inside
functions), so a new arrow in the wrong direction fails here."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("admin_project", "catalog_project", "workers", "product_events", "common")
OURS = (*PACKAGES, "bench", "harness", "tests")
# package -> the packages of ours it may import (besides itself)
ALLOWED = {
    "product_events": set(),
    "common": set(),
    "admin_project": {"product_events", "common"},
    "catalog_project": {"product_events", "common"},
    "workers": {"catalog_project", "product_events", "common"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Modules of ours that ``path`` imports (``from x import y`` counts x.y when it exists)."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path).split(".")
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_package else here[:-1]
                base = base[:len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        out |= {n for n in names if n.split(".")[0] in OURS and module_exists(n)}
    return out


def module_exists(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")
             if "migrations" not in p.parts]
    return {module_name(p): imports(p) for p in files}


def test_arrows_point_one_way():
    wrong = sorted(
        f"{mod} imports {dep}"
        for mod, deps in graph().items() for dep in deps
        if (top := dep.split(".")[0]) != mod.split(".")[0]
        and top not in ALLOWED[mod.split(".")[0]]
    )
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    g = graph()
    # a package's __init__ is imported by its modules implicitly: only explicit imports count
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state and (cycle := visit(node)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_the_checks_see_imports():
    """The graph is not empty by mistake: known arrows are found."""
    g = graph()
    assert "admin_project.outbox.record" in g["admin_project.products.services"]
    assert "catalog_project.topology" in g["catalog_project.catalog.queues"]
    assert "product_events.contract" in g["workers.handling"]

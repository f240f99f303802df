"""The direction of dependencies in DESIGN.md §3, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT

LAYERS = ["core", "jobs", "services", "infrastructure", "triggers"]
FORBIDDEN = {
    "core": {"infrastructure", "services", "triggers", "jobs", "devstack", "rasterio", "psycopg", "azure"},
    "services": {"triggers", "devstack"},
    "infrastructure": {"triggers", "services", "jobs", "devstack"},
    "jobs": {"triggers", "devstack"},
    "triggers": {"rasterio", "osgeo", "geopandas", "duckdb", "psycopg", "devstack"},
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_imports_only_what_it_may(layer: str) -> None:
    offences = {
        str(path.relative_to(PROJECT_ROOT)): sorted(imports(path) & FORBIDDEN[layer])
        for path in (PROJECT_ROOT / layer).rglob("*.py")
    }
    assert {k: v for k, v in offences.items() if v} == {}


def test_triggers_reach_the_database_only_through_services_or_the_context() -> None:
    for path in (PROJECT_ROOT / "triggers").rglob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(m.startswith("infrastructure.db") for m in modules), path


def test_http_triggers_contain_no_sql() -> None:
    keywords = ("SELECT ", "INSERT ", "UPDATE ", "DELETE FROM", "CREATE TABLE")
    for path in (PROJECT_ROOT / "triggers").rglob("*.py"):
        text = path.read_text()
        assert not any(k in text for k in keywords), f"{path} contains SQL"


def test_function_app_only_composes() -> None:
    tree = ast.parse((PROJECT_ROOT / "function_app.py").read_text())
    kinds = {type(node).__name__ for node in tree.body}
    assert kinds <= {"Expr", "Import", "ImportFrom", "Assign"}
    assert not any(isinstance(node, ast.FunctionDef) for node in ast.walk(tree))

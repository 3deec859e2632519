"""The layering, read from the code with ``ast`` so that it cannot erode silently (docs/architecture.md):

    app.py -> callbacks/ -> dashboard/ -> web/, pipeline/, accounts/ -> store/

Each package may import only the packages below it; ``pipeline/``, ``accounts/`` and ``store/`` import neither Dash
nor Flask; every Dash callback is registered in ``callbacks/`` and none in ``dashboard/``; ``app.py`` imports the
``callbacks`` package once, and that registers everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "callbacks", "dashboard", "web", "pipeline", "accounts", "store")
# What each layer may import from the project (itself included).
ALLOWED = {
    "store": {"store"},
    "accounts": {"accounts", "store"},
    "pipeline": {"pipeline", "accounts", "store"},
    "web": {"web", "pipeline", "accounts", "store"},
    "dashboard": {"dashboard", "web", "pipeline", "accounts", "store"},
    "callbacks": {"callbacks", "dashboard", "web", "pipeline", "accounts", "store"},
    "app": set(PACKAGES),
}
NO_WEB_FRAMEWORK = ("pipeline", "accounts", "store")
CALLBACK_REGISTRARS = {"callback", "clientside_callback"}


def _modules(package: str) -> list[Path]:
    if package == "app":
        return [ROOT / "app.py"]
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, int]]:
    """Top-level names of every module this file imports (any depth: inside functions too), with line numbers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_each_layer_imports_only_the_layers_below_it(package):
    bad = []
    for path in _modules(package):
        for name, line in _imports(path):
            if name in PACKAGES and name not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
            if package in NO_WEB_FRAMEWORK and name in ("dash", "flask", "dash_bootstrap_components", "plotly"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name} (no web framework below web/)")
    assert not bad, "\n".join(bad)


def _registrations(path: Path) -> list[int]:
    """Lines where a file registers a Dash callback: ``dash.callback``, ``callback``, ``app.callback``,
    ``clientside_callback``, called or used as a decorator."""
    tree = ast.parse(path.read_text(), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in CALLBACK_REGISTRARS:
                lines.append(node.lineno)
    return lines


def test_callbacks_live_in_callbacks_and_nowhere_else():
    outside = [
        f"{p.relative_to(ROOT)}:{line}"
        for pkg in ("dashboard", "web", "pipeline", "accounts", "store", "app")
        for p in _modules(pkg)
        for line in _registrations(p)
    ]
    assert not outside, "Dash callbacks outside callbacks/:\n" + "\n".join(outside)
    inside = [p for p in _modules("callbacks") if _registrations(p)]
    assert len(inside) >= 10, "callbacks/ should hold the app's callbacks, one module per page or concern"


def test_dashboard_pages_register_layouts_only_and_callbacks_mirror_them():
    """Each page module with callbacks has its callback module of the same name under callbacks/ (the pages
    folder mirrored)."""
    pages = ROOT / "dashboard" / "pages"
    missing = []
    for page in pages.rglob("*.py"):
        if page.name == "__init__.py":
            continue
        text = page.read_text()
        assert "register_page" in text, f"{page.relative_to(ROOT)} is in pages/ but registers no page"
        rel = page.relative_to(pages)
        twin = ROOT / "callbacks" / rel
        if not twin.exists():
            continue
        if not _registrations(twin):
            missing.append(f"callbacks/{rel} registers no callback")
    assert not missing, "\n".join(missing)


def test_app_imports_the_callbacks_package_once():
    imports = [name for name, _ in _imports(ROOT / "app.py") if name == "callbacks"]
    assert len(imports) == 1, f"app.py should import callbacks once, found {len(imports)}"
    assert (ROOT / "callbacks" / "__init__.py").exists()

"""The house reads top to bottom: every import points down the declared layers.

The import graph is read from the ``ast`` of every module of the product
packages, imports inside functions included (they are how circles hide). Each
top-level package imports only its own and lower packages; inside a package a
module imports only its own and lower layers; and there is no circle anywhere.
``tests/``, ``bench/`` and ``scripts/`` stand above the house and are not read.
"""

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. One line per package in docs/ARCHITECTURE.md says what each owns.
PACKAGES = ("common", "queues", "matching", "realtime", "hearo")

# Inside each package, lowest layer first; a module imports only its own layer or lower ones.
# Every module must be placed (a new module fails the test until it is), with
# ``*`` standing for a subpackage's modules.
LAYERS = {
    "common": [
        {
            "common",
            "common.errors",
            "common.events",
            "common.logs",
            "common.metrics",
            "common.models",
            "common.db",
            "common.clientaddr",
            "common.security",
            "common.parsers",
        },
        {"common.redis_clients"},
        {"common.api", "common.publish", "common.lockout"},
    ],
    "queues": [
        {"queues", "queues.models", "queues.ranking", "queues.signals", "queues.hours", "queues.config"},
        {"queues.migrations.*", "queues.leases"},
        {"queues.selectors"},
        {"queues.services"},
        {"queues.staff"},
        {"queues.apis", "queues.fastpath", "queues.admin"},
        {"queues.staff_apis"},
        {"queues.apps"},
    ],
    "matching": [
        {"matching", "matching.models", "matching.pairing"},
        {"matching.migrations.*", "matching.livekit", "matching.selectors", "matching.triggers"},
        {"matching.counselors"},
        {"matching.endings"},
        {"matching.handoff"},
        {"matching.matcher"},
        {"matching.tasks", "matching.inprocess"},
        {"matching.apis", "matching.staff_apis", "matching.admin", "matching.dashboard", "matching.management.*"},
        {"matching.apps"},
    ],
    "realtime": [
        {
            "realtime",
            "realtime.stomp",
            "realtime.destinations",
            "realtime.layers",
            "realtime.connection_cap",
            "realtime.gc_policy",
        },
        {"realtime.session_events"},
        {"realtime.session", "realtime.sockjs", "realtime.sockjs.framing"},
        {"realtime.auth", "realtime.hub", "realtime.naive_fanout", "realtime.lease_keeper"},
        {"realtime.connection"},
        {"realtime.stomp_connection", "realtime.json_connection"},
        {"realtime.consumers", "realtime.sockjs.session"},
        {"realtime.conformance"},
        {"realtime.sockjs.services"},
        {"realtime.sockjs.http", "realtime.sockjs.ws"},
        {"realtime.routing"},
        {"realtime.apps"},
    ],
    "hearo": [
        {"hearo.settings", "hearo.celery"},
        {"hearo", "hearo.health", "hearo.pages"},
        {"hearo.page_urls", "hearo.urls"},
        {"hearo.asgi", "hearo.wsgi"},
    ],
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def resolve(name: str) -> str | None:
    """Return the product module an imported name lives in (a submodule if it is one)."""
    while name:
        if name in modules():
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """Return every product module ``module`` imports, at the top or inside a function."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # "from x import y": x.y if y is a submodule, and x itself (its __init__ runs) either way.
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            target = resolve(name)
            if target is not None and target != module:
                found.add(target)
    return found


def layer_of(module: str) -> int:
    package = module.split(".")[0]
    for index, layer in enumerate(LAYERS[package]):
        for entry in layer:
            if module == entry or (entry.endswith(".*") and (module + ".").startswith(entry[:-1])):
                return index
    raise AssertionError(f"{module} is in no layer of {package}: add it to LAYERS in {__name__}")


def graph() -> dict[str, set[str]]:
    return {module: imports_of(module) for module in modules()}


def test_every_module_has_a_declared_layer():
    for module in modules():
        layer_of(module)


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_point_down(module):
    package = module.split(".")[0]
    upward = []
    for target in sorted(imports_of(module)):
        target_package = target.split(".")[0]
        if PACKAGES.index(target_package) > PACKAGES.index(package):
            upward.append(f"{target} (package {target_package} is above {package})")
        elif target_package == package and layer_of(target) > layer_of(module):
            upward.append(f"{target} (layer {layer_of(target)} is above {module}'s {layer_of(module)})")
    assert not upward, f"{module} imports upward: {upward}"


def test_there_is_no_import_circle():
    edges = graph()
    # Iterative DFS with colours: grey on the stack, black done.
    colour: dict[str, str] = {}
    for start in sorted(edges):
        if start in colour:
            continue
        stack = [(start, iter(sorted(edges[start])))]
        path = [start]
        colour[start] = "grey"
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = "black"
                stack.pop()
                path.pop()
            elif colour.get(child) == "grey":
                circle = [*path[path.index(child) :], child]
                raise AssertionError("import circle: " + " -> ".join(circle))
            elif child not in colour:
                colour[child] = "grey"
                stack.append((child, iter(sorted(edges[child]))))
                path.append(child)


def test_the_checker_sees_an_upward_import_inside_a_function(tmp_path, monkeypatch):
    """The checker itself: a function-level import of a higher layer is caught."""
    fake = {"queues": tmp_path / "queues" / "__init__.py", "queues.models": tmp_path / "queues" / "models.py"}
    fake["queues"].parent.mkdir()
    fake["queues"].write_text("")
    fake["queues.models"].write_text("def f():\n    from queues import services\n    from matching.models import X\n")
    fake["queues.services"] = tmp_path / "queues" / "services.py"
    fake["queues.services"].write_text("")
    fake["matching.models"] = tmp_path / "unread.py"
    monkeypatch.setattr(f"{__name__}.modules", lambda: fake)
    assert imports_of("queues.models") == {"queues", "queues.services", "matching.models"}
    assert layer_of("queues.services") > layer_of("queues.models")


# A status is written as ``.update(status=…)`` or ``x.status = …`` (alone or in a tuple).
STATUS_WRITE = re.compile(r"\.update\((?:[^)]*[^_\w])?status=|\.status(?:, [\w.]+)* = [^=]")


def status_writers() -> set[tuple[str, str]]:
    """Return every (module, function) that writes a status (migrations are generated, not read)."""
    found = set()
    for module, path in modules().items():
        if ".migrations" in module:
            continue
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = lines[node.lineno - 1 : node.end_lineno]
                # Nested functions are walked too; the innermost name is the one that counts.
                if any(STATUS_WRITE.search(line) for line in body):
                    inner = [n for n in ast.walk(node) if n is not node and isinstance(n, ast.FunctionDef)]
                    if not any(STATUS_WRITE.search(line) for n in inner for line in lines[n.lineno - 1 : n.end_lineno]):
                        found.add((module, node.name))
    return found


def test_each_status_has_one_writer():
    """A visit's status is moved only by ``registration_move``; a counselor's only by ``counselor_status_change``."""
    assert status_writers() == {
        ("queues.services", "registration_move"),
        ("matching.counselors", "counselor_status_change"),
    }

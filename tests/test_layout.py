"""The project's layout: no top-level package may shadow a standard-library module."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def top_level_modules() -> set[str]:
    names = set()
    for entry in ROOT.iterdir():
        if entry.name.startswith(".") or entry.name in ("node_modules",):
            continue
        if entry.is_dir() and (entry / "__init__.py").exists():
            names.add(entry.name)
        elif entry.suffix == ".py":
            names.add(entry.stem)
    return names


def test_no_top_level_package_shadows_the_standard_library():
    shadowing = top_level_modules() & set(sys.stdlib_module_names)
    assert shadowing == set(), f"rename {shadowing}: they shadow the standard library"


def test_the_fixed_layout_is_present():
    for name in ("manage.py", "hearo", "queues", "matching", "realtime", "templates", "static", "tests"):
        assert (ROOT / name).exists(), name
    assert {"queues", "matching", "realtime", "hearo"} <= top_level_modules()

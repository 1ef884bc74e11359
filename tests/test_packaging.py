"""Packaging stays honest: conda matches pyproject, the core is small, light and acyclic."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

import sagakit
from sagakit._worker import CORE_MODULES
from tests.helpers import ROOT, fresh_python, load_tool, modules_imported_by

EXTRAS = ("course", "test", "site")
LOCK = ROOT / "constraints.txt"


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return set(project["dependencies"]) | {r for extra in EXTRAS for r in extras[extra]}


def _conda_pip_requirements() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml must have exactly one pip section"
    return {r for r in pip_sections[0] if not r.startswith(("-e", "-c"))}


def test_environment_yml_matches_pyproject() -> None:
    conda, pyproject = _conda_pip_requirements(), _pyproject_requirements()
    assert conda - pyproject == set(), "in environment.yml but not pyproject.toml"
    assert pyproject - conda == set(), "in pyproject.toml but not environment.yml"


def test_environment_yml_installs_sagakit_itself() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip


def _locked() -> dict[str, str]:
    """The lock's pins, name -> version; every line is a comment or ``name==version``."""
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-z0-9]+(?:-[a-z0-9]+)*)==([0-9][0-9A-Za-z.+!-]*)", line)
        assert match, f"constraints.txt: {line!r} is not an exact pin of a normalised name"
        assert match.group(1) not in pins, f"constraints.txt pins {match.group(1)} twice"
        pins[match.group(1)] = match.group(2)
    return pins


def _requirement_name(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert name, requirement
    normalised: str = load_tool("lock").normalise(name.group(0))
    return normalised


def test_the_lock_pins_every_dependency_exactly() -> None:
    pins = _locked()
    missing = {_requirement_name(r) for r in _pyproject_requirements()} - set(pins)
    assert missing == set(), "in pyproject.toml but not in constraints.txt: run `make lock`"
    assert "sagakit" not in pins, "the project itself is installed editable, never pinned"


def test_the_installed_versions_are_the_locked_ones() -> None:
    """The environment the tests (and the notebooks' outputs) run in is the locked one."""
    from importlib.metadata import PackageNotFoundError, version

    pins = _locked()
    wrong = {}
    for requirement in _pyproject_requirements():
        name = _requirement_name(requirement)
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "not installed"
        if installed != pins[name]:
            wrong[name] = f"{installed}, locked {pins[name]}"
    assert wrong == {}, "run `make setup` (it installs with -c constraints.txt)"


def test_every_locked_version_installs_on_the_oldest_supported_python() -> None:
    """A pin that needs a newer Python than requires-python breaks `make setup` there.

    (soupsieve 4.1.3, Requires-Python >= 3.11.5, did so on Debian's Python 3.11.2.)
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floor = re.fullmatch(r">=(\d+\.\d+)", project["requires-python"])
    assert floor, "requires-python is not of the form >=X.Y"
    oldest = f"{floor.group(1)}.0"
    needs_newer = {}
    for name in _locked():
        wants = importlib.metadata.metadata(name).json.get("requires_python")
        if wants and oldest not in SpecifierSet(wants):
            needs_newer[name] = wants
    assert needs_newer == {}, f"these pins need a newer Python than {oldest}: run `make lock`"


def test_every_install_path_uses_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line]
    project = [line for line in installs if "-e " in line]
    assert project, "the Makefile installs the project"
    for line in project:
        assert "-c $(LOCK)" in line, line
        assert f'-e ".[{",".join(EXTRAS)}]"' in line, line
    installer = [line for line in installs if line.rstrip().endswith(" uv")]
    assert installer, "the Makefile installs the installer (uv) first"
    assert all("-c $(LOCK)" in line for line in installer), installer
    assert "uv" in _locked(), "the installer is pinned with the rest"
    assert re.search(r"^LOCK\s*:=\s*constraints\.txt$", makefile, re.M)
    assert re.search(r"^\$\(STAMP\):.*\$\(LOCK\)", makefile, re.M), "a new lock reinstalls"
    assert re.search(r"^lock:.*\n\t\$\(BIN\)/python tools/lock\.py$", makefile, re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), "CI installs through make setup"
    assert not [line for line in ci.splitlines() if "pip install" in line and "-c" not in line]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip[0] == "-c constraints.txt", "environment.yml installs with the lock"


def test_the_lock_tool_writes_sorted_exact_pins_without_the_project() -> None:
    report = {
        "environment": {"python_version": "3.11", "sys_platform": "linux"},
        "install": [
            {"metadata": {"name": "Zope.Interface", "version": "7.0"}},
            {"metadata": {"name": "sagakit", "version": "0.1.0"}},
            {"metadata": {"name": "temporalio", "version": "1.35.0"}},
        ],
    }
    text = load_tool("lock").constraints_from_report(report)
    assert [line for line in text.splitlines() if not line.startswith("#")] == [
        "temporalio==1.35.0",
        "zope-interface==7.0",
    ]
    assert "make lock" in text
    assert "make notebooks" in text


def test_namespace_is_exactly_all_sorted_and_small() -> None:
    """httpx's rule: what ``import sagakit`` shows is ``__all__``, sorted, and nothing else."""
    shown = json.loads(
        fresh_python(
            "import json, sagakit\n"
            "names = [n for n in vars(sagakit) if not n.startswith('_')]\n"
            "names += [n for n in dir(sagakit) if not n.startswith('_')]\n"
            "for n in sagakit.__all__: getattr(sagakit, n)\n"
            "names += [n for n in vars(sagakit) if not n.startswith('_')]\n"
            "print(json.dumps(sorted(set(names))))"
        )
    )
    assert sagakit.__all__ == sorted(sagakit.__all__)
    assert len(set(sagakit.__all__)) == len(sagakit.__all__)
    assert shown == sagakit.__all__
    assert len(sagakit.__all__) <= 30, "the core's API is small on purpose"


def test_every_public_name_is_documented() -> None:
    for name in sagakit.__all__:
        obj = getattr(sagakit, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"sagakit.{name} has no docstring"
            assert obj.__module__.startswith("sagakit."), name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Sagaa'"):
        _ = sagakit.Sagaa


COURSE_LIBRARIES = ("matplotlib", "ipywidgets", "IPython", "ipykernel", "psutil", "jupyterlab")


def test_importing_the_core_loads_nothing_of_the_course() -> None:
    """``import sagakit`` and every core module load the standard library and temporalio only."""
    loaded = modules_imported_by(
        "import sagakit\n"
        "for name in sagakit.__all__: getattr(sagakit, name)\n"
        f"for module in {list(CORE_MODULES)!r} + ['sagakit.testing']:\n"
        "    __import__(module)",
        already="import temporalio.client, temporalio.worker, temporalio.testing, temporalio.workflow",
    )
    assert loaded, "the probe imported something"
    foreign = [
        name
        for name in loaded
        if name.split(".")[0] not in sys.stdlib_module_names
        and not (name == "sagakit" or name.startswith("sagakit._") or name in _PUBLIC_CORE)
    ]
    assert foreign == [], "the core imports more than the standard library and temporalio"
    assert not [name for name in loaded if name.startswith(COURSE_LIBRARIES)]


def test_importing_sagakit_alone_imports_no_module_at_all() -> None:
    """The package is a table of names: cheap in the sandbox, and it imports without temporalio."""
    loaded = modules_imported_by("import sagakit")
    assert "sagakit" in loaded
    assert [
        n for n in loaded if n != "sagakit" and n.split(".")[0] not in sys.stdlib_module_names
    ] == []


_PUBLIC_CORE = {"sagakit.history", "sagakit.testing"}


def _imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every ``sagakit`` module that the file at ``path`` imports, at any depth in the file.

    ``from package import submodule`` counts as importing the submodule.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sagakit")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sagakit"):
            module = node.module or ""
            submodules = {f"{module}.{a.name}" for a in node.names} & modules
            found |= submodules or {module}
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    paths = sorted((ROOT / "sagakit").rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports_of(p, modules) for p in paths}


def test_the_core_never_imports_the_course() -> None:
    graph = _import_graph()
    core = [m for m in graph if not m.startswith("sagakit.course") and m != "sagakit.__main__"]
    assert "sagakit._saga" in core
    wrong = {m: sorted(i for i in graph[m] if i.startswith("sagakit.course")) for m in core}
    assert {m: i for m, i in wrong.items() if i} == {}


def test_no_import_cycle_between_sagakit_modules() -> None:
    graph = _import_graph()
    # `from sagakit import X` names the package but fetches X from its home module.
    edges = {
        m: {i for i in imports if i in graph and i != "sagakit"} for m, imports in graph.items()
    }
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        for target in edges[module]:
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    done: set[str] = set()
    for module in edges:
        if module not in done:
            visit(module, [module])
    assert cycles == []


def test_errors_share_one_root() -> None:
    errors = [getattr(sagakit, n) for n in sagakit.__all__ if n.endswith("Error")]
    assert errors, "the package exports its errors"
    for error in errors:
        assert issubclass(error, sagakit.SagakitError), error


def test_the_error_tree_in_errors_py_names_every_error() -> None:
    """The drawing in sagakit/_errors.py is how users learn what can go wrong: keep it whole."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(sagakit.__path__, "sagakit."):
        if info.name != "sagakit.__main__":
            importlib.import_module(info.name)

    def subclasses(cls: type[BaseException]) -> list[type[BaseException]]:
        return [s for c in cls.__subclasses__() for s in (c, *subclasses(c))]

    doc = importlib.import_module("sagakit._errors").__doc__ or ""
    missing = {
        c.__name__
        for c in subclasses(sagakit.SagakitError)
        if not c.__module__.startswith("sagakit.course.lessons") and c.__name__ not in doc
    }
    assert missing == set()

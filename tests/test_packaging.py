"""Packaging stays honest: the conda environment matches pyproject, the API is exported."""

from __future__ import annotations

import inspect
import tomllib

import yaml

import sagakit
from tests.helpers import ROOT


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return set(project["dependencies"]) | set(extras["course"]) | set(extras["test"])


def _conda_pip_requirements() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml must have exactly one pip section"
    return {r for r in pip_sections[0] if not r.startswith("-e")}


def test_environment_yml_matches_pyproject() -> None:
    conda, pyproject = _conda_pip_requirements(), _pyproject_requirements()
    assert conda - pyproject == set(), "in environment.yml but not pyproject.toml"
    assert pyproject - conda == set(), "in pyproject.toml but not environment.yml"


def test_environment_yml_installs_sagakit_itself() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip


def test_all_is_sorted_and_resolves() -> None:
    assert sagakit.__all__ == sorted(sagakit.__all__)
    assert len(set(sagakit.__all__)) == len(sagakit.__all__)
    for name in sagakit.__all__:
        assert hasattr(sagakit, name), f"{name} is in __all__ but not importable"


def test_every_public_name_has_a_docstring() -> None:
    for name in sagakit.__all__:
        obj = getattr(sagakit, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"sagakit.{name} has no docstring"


def test_errors_share_one_root() -> None:
    errors = [
        getattr(sagakit, n)
        for n in sagakit.__all__
        if n.endswith(("Error", "Unreachable", "NotFound", "Conflict", "InProgress"))
    ]
    assert errors, "the package exports its errors"
    for error in errors:
        assert issubclass(error, sagakit.SagakitError), error


def test_every_module_exports_into_the_package() -> None:
    """A public name of a top-level module is re-exported from ``sagakit``.

    Subpackages (``sagakit.course.services``, ``sagakit.course.lessons``) are namespaces of their own.
    """
    import importlib
    import pkgutil

    missing = []
    for info in pkgutil.iter_modules(sagakit.__path__, "sagakit."):
        if info.ispkg or info.name == "sagakit.__main__":
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            if name not in sagakit.__all__:
                missing.append(f"{info.name}.{name}")
    assert missing == []


def test_the_error_tree_in_errors_py_names_every_error() -> None:
    """The drawing in sagakit/_errors.py is how users learn what can go wrong: keep it whole."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(sagakit.__path__, "sagakit."):
        if info.name != "sagakit.__main__":
            importlib.import_module(info.name)

    def subclasses(cls: type) -> list[type]:
        return [s for c in cls.__subclasses__() for s in (c, *subclasses(c))]

    doc = importlib.import_module("sagakit._errors").__doc__ or ""
    missing = {
        c.__name__
        for c in subclasses(sagakit.SagakitError)
        if not c.__module__.startswith("sagakit.course.lessons") and c.__name__ not in doc
    }
    assert missing == set()

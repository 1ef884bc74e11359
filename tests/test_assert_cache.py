"""The cache of rewritten test modules that the controlling process writes (tests/assert_cache.py).

It must be a cache pytest accepts, hold the rewritten code (an assert that fails says what
its operands were), go stale when the source changes, and respect a turned-off bytecode cache.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from _pytest.assertion import rewrite

from tests.assert_cache import cache_path, is_cached, write_rewritten_bytecode

SAMPLE = "def check(seen):\n    expected = 2\n    assert seen == expected\n"


def _module(folder: Path, name: str, source: str = SAMPLE) -> Path:
    path = folder / name
    path.write_text(source)
    return path


@pytest.fixture
def bytecode_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # The Makefile turns it on for make test; a developer's shell may have it off.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


@pytest.mark.usefixtures("bytecode_on")
def test_the_cache_written_is_one_pytest_loads_with_the_asserts_rewritten(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    modules = [_module(tmp_path, "test_one.py"), _module(tmp_path, "test_two.py")]
    assert not any(is_cached(m) for m in modules)

    assert write_rewritten_bytecode(modules, pytestconfig) == modules

    for module in modules:
        code = rewrite._read_pyc(module, cache_path(module))
        assert code is not None
        namespace: dict[str, object] = {}
        exec(code, namespace)
        check = namespace["check"]
        assert callable(check)
        with pytest.raises(AssertionError, match=r"assert 1 == 2"):
            check(1)
    assert write_rewritten_bytecode(modules, pytestconfig) == []


@pytest.mark.usefixtures("bytecode_on")
def test_an_edited_module_is_written_again(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    module = _module(tmp_path, "test_edited.py")
    write_rewritten_bytecode([module], pytestconfig)
    module.write_text(SAMPLE + "\n\ndef more():\n    pass\n")
    assert not is_cached(module)
    assert write_rewritten_bytecode([module], pytestconfig) == [module]
    assert is_cached(module)


def test_nothing_is_written_with_the_bytecode_cache_off(
    tmp_path: Path, pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    module = _module(tmp_path, "test_off.py")
    assert write_rewritten_bytecode([module], pytestconfig) == []
    assert not cache_path(module).parent.exists()

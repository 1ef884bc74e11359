"""Write pytest's cache of rewritten test modules once, before the test processes start.

pytest rewrites the ``assert`` statements of every test module it imports, so a failing
assert can say what its operands were, and caches the result in ``__pycache__``
(``test_x.cpython-311-pytest-9.2.0.pyc``). On a fresh clone there is no cache yet, and
the test processes (five here) that pytest-xdist starts at the same moment each rewrite all
seventy modules: 2.6 s of CPU each, for the same files. The controlling process calls
:func:`write_rewritten_bytecode` first (2.6 s on one core), and the test processes find
the cache.

This calls pytest's own rewriting functions, which are private (the lock pins pytest's
version). Nothing depends on it: a module whose cache is missing or stale when a test
process imports it is rewritten there, as before. ``tests/test_assert_cache.py`` checks
that the cache written here is one pytest accepts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from _pytest.assertion import rewrite


def cache_path(module: Path) -> Path:
    """Where pytest caches the rewritten ``module``."""
    return rewrite.get_cache_dir(module) / (module.name[:-3] + rewrite.PYC_TAIL)


def is_cached(module: Path) -> bool:
    """Whether pytest would load ``module`` from its cache instead of rewriting it again."""
    return rewrite._read_pyc(module, cache_path(module)) is not None


def write_rewritten_bytecode(modules: Sequence[Path], config: pytest.Config) -> list[Path]:
    """Rewrite and cache each of ``modules`` that has no valid cache; return those written.

    Nothing is written where pytest would not write either: with Python's bytecode
    cache turned off, or with assertion rewriting off (``--assert=plain``).
    """
    if sys.dont_write_bytecode or config.getoption("assertmode") != "rewrite":
        return []
    return [m for m in modules if not is_cached(m) and _write(m, config)]


def _write(module: Path, config: pytest.Config) -> bool:
    source_hash, code = rewrite._rewrite_test(module, config)
    pyc = cache_path(module)
    if not rewrite.try_makedirs(pyc.parent):
        return False
    state = config.stash[rewrite.assertstate_key]
    return rewrite._write_pyc(state, code, source_hash, pyc)

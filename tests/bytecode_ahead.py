"""Bytecode for the whole checkout, made once by the pytest-xdist controller before its workers start.

Why: every worker imports every test module, and pytest rewrites each one's asserts (parse, rewrite, compile) unless
it finds its own cached copy of the result (`__pycache__/*.cpython-311-pytest-*.pyc`); the product's modules are
compiled in every Python process that imports them (the workers, the fork servers, each CLI and server process a
test starts) unless their .pyc is there. In a clean clone none of it is, and four workers doing the same work at the
same time, under coverage, cost about 40 s of wall and 75 CPU-s before the first test ran; with the caches in place
24 s and 39 CPU-s (docs/performance.md). Made here once, in one process, they are only read by the workers.

Only when Python may write bytecode (`sys.dont_write_bytecode` unset): `make test` clears PYTHONDONTWRITEBYTECODE
for its run; whoever sets it when running pytest by hand keeps a checkout without caches, and the workers then
rewrite and compile for themselves, as before. The rewritten copies are written as pytest writes them (its
`_pytest.assertion.rewrite` helpers, hash-checked, so a stale one is never used); should those helpers change,
this does nothing and the workers do the work themselves.
"""

from __future__ import annotations

import compileall
import logging
import re
import sys
import time
from pathlib import Path

import pytest

_log = logging.getLogger(__name__)

# The folders whose modules a test run imports from the checkout (the product's and the tests' own).
_SOURCE_FOLDERS = ("qualitybridge", "server", "adapters", "tests")
# Test modules are imported through pytest's rewriting hook, which never reads their plain .pyc: not compiled twice.
_REWRITTEN_ONLY = re.compile(r"[/\\](test_[^/\\]*|conftest)\.py$")


def _is_xdist_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


def _test_modules(tests: Path) -> list[Path]:
    """The modules pytest rewrites here: the conftest files and its default python_files (test_*.py) of each tier."""
    return sorted([*tests.glob("conftest.py"), *tests.glob("*/conftest.py"), *tests.glob("*/test_*.py")])


def _rewrite_ahead(config: pytest.Config, modules: list[Path]) -> int:
    """Rewritten copies of `modules` where pytest has none or a stale one; answers how many were written."""
    try:
        from _pytest.assertion.rewrite import (
            PYC_TAIL,
            _read_pyc,
            _rewrite_test,
            _write_pyc,
            assertstate_key,
            get_cache_dir,
        )
    except ImportError:  # pytest moved its helpers: the workers rewrite for themselves
        return 0
    state = config.stash.get(assertstate_key, None)
    if state is None:  # --assert=plain: nothing is rewritten
        return 0
    written = 0
    for module in modules:
        cache_dir = get_cache_dir(module)
        pyc = cache_dir / (module.name[:-3] + PYC_TAIL)
        if _read_pyc(module, pyc) is not None:
            continue
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)  # parents: under PYTHONPYCACHEPREFIX it may be deep
        except OSError:  # a read-only checkout: pytest reads and rewrites there without a cache too
            return written
        source_hash, code = _rewrite_test(module, config)
        written += _write_pyc(state, code, source_hash, pyc)
    return written


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if sys.dont_write_bytecode or not _is_xdist_controller(config):
        return
    started = time.monotonic()
    # Not traced: none of it is the product's code, and coverage's tracer (started in this process by pytest-cov
    # before this hook) made it half as slow again.
    tracer = sys.gettrace()
    sys.settrace(None)
    try:
        root = Path(config.rootpath)
        for folder in (root / name for name in _SOURCE_FOLDERS):
            if folder.is_dir():
                compileall.compile_dir(folder, quiet=1, rx=_REWRITTEN_ONLY)
        rewritten = _rewrite_ahead(config, _test_modules(root / "tests"))
    finally:
        sys.settrace(tracer)
    _log.debug(
        "bytecode ahead of the workers: %d test modules rewritten in %.1f s", rewritten, time.monotonic() - started
    )

"""Where the suite's time goes, per test module: wall time, CPU of the test process, and CPU of the processes it
started and waited for (servers, simulators, the CLI, node), from getrusage deltas around each test (its
fixtures' set-up and teardown included, so a module's deployments count for the module), and how many Python
processes it started (`qualitybridge serve`, simulators, CLI commands: each pays the interpreter and its imports).

    .venv/bin/pytest -n 0 -p tests.suite_profile tests/e2e/test_x.py ...    # table on stdout, and rows
                                                                            # appended to $QB_SUITE_PROFILE (TSV)
    QB_SUITE_PROFILE=profile.tsv make test PYTEST_ADDOPTS="-p tests.suite_profile"   # with xdist: the TSV only

A process still running when a module ends (a session-scoped one) counts for the module in which it is reaped.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

_totals: dict[str, list[float]] = {}
_python_children = [0]  # Python processes started (servers, simulators, CLI commands, the flooder)
_original_popen_init = subprocess.Popen.__init__


def _counting_popen_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **options: Any) -> None:
    command = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    if command and str(command[0]) == sys.executable:
        _python_children[0] += 1
    _original_popen_init(self, args, *rest, **options)


subprocess.Popen.__init__ = _counting_popen_init  # type: ignore[method-assign]


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    wall, own, children = time.monotonic(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    pythons = _python_children[0]
    yield
    module = item.nodeid.partition("::")[0]
    row = _totals.setdefault(module, [0.0, 0.0, 0.0, 0, 0])
    row[0] += time.monotonic() - wall
    row[1] += _cpu(resource.RUSAGE_SELF) - own
    row[2] += _cpu(resource.RUSAGE_CHILDREN) - children
    row[3] += 1
    row[4] += _python_children[0] - pythons


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Appends the rows to $QB_SUITE_PROFILE (in each pytest-xdist worker, which sees its own modules)."""
    target = os.environ.get("QB_SUITE_PROFILE")
    if target and _totals:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with Path(target).open("a", encoding="utf-8") as out:
            for module, (wall, own, children, tests, pythons) in _totals.items():
                out.write(f"{module}\t{worker}\t{tests}\t{pythons}\t{wall:.1f}\t{own:.1f}\t{children:.1f}\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _totals:
        return  # under pytest-xdist the workers measured; see $QB_SUITE_PROFILE
    lines = [f"{'module':60} {'tests':>5} {'pythons':>7} {'wall s':>7} {'own CPU':>8} {'children':>8} {'CPU s':>7}"]
    for module, (wall, own, children, tests, pythons) in sorted(_totals.items(), key=lambda kv: -(kv[1][1] + kv[1][2])):
        lines.append(
            f"{module:60} {tests:5d} {pythons:7d} {wall:7.1f} {own:8.1f} {children:8.1f} {own + children:7.1f}"
        )
    terminalreporter.write_sep("-", "suite profile (per module)")
    terminalreporter.write_line("\n".join(lines))

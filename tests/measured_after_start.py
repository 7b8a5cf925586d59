"""`python tests/measured_after_start.py READY_TEXT ARGS...` runs `python -m qualitybridge ARGS...` in this
interpreter and starts coverage's measurement when the process writes READY_TEXT (to stdout or stderr).

Why: the suite starts a server process about 50 times, and measured from its first line a start cost twice its CPU
(Python 3.11's C tracer slows even the asyncua and SQLAlchemy code it does not measure 2-5x): about half of the
suite's CPU went into tracing start-ups whose lines the integration tier measures in-process anyway. What a test
does with a running server (every request it serves, its stop) is measured as before; what runs before the ready
line is not, in these processes. Without coverage (no COVERAGE_PROCESS_CONFIG) the harness runs
`python -m qualitybridge` itself and this module is not involved.

The harness hands coverage's subprocess configuration over in DEFERRED_VARIABLE instead of the variable coverage's
start-up hook reads, so the hook does nothing at interpreter start; this module puts it back and starts coverage
through that same hook function, which saves the data when the process exits. The SIGTERM handler the server
installed before it was ready stays in place (coverage's `sigterm` option would replace it).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from typing import Any, TextIO

DEFERRED_VARIABLE = "QB_TEST_COVERAGE_AFTER_READY"
COVERAGE_VARIABLE = "COVERAGE_PROCESS_CONFIG"


def start_measuring() -> None:
    config = os.environ.pop(DEFERRED_VARIABLE, None)
    if config is None:
        return
    os.environ[COVERAGE_VARIABLE] = config  # for the processes this one starts, as coverage's patch does
    import coverage

    server_handler = signal.getsignal(signal.SIGTERM)
    coverage.process_startup()
    signal.signal(signal.SIGTERM, server_handler)


class ReadyWatch:
    """A stream that passes everything through and starts measuring at the first write holding the ready text."""

    def __init__(self, stream: TextIO, ready_text: str) -> None:
        self._stream = stream
        self._ready_text = ready_text

    def write(self, text: str) -> int:
        if self._ready_text in text:
            # Before the line goes out: what the process prints right after it (the operations endpoint's address)
            # follows it as closely as without coverage, for a test that reads both once it sees the first.
            start_measuring()
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main() -> None:
    ready_text, *arguments = sys.argv[1:]
    sys.path[0] = os.getcwd()  # as for `python -m qualitybridge`, not this file's folder
    sys.stdout = ReadyWatch(sys.stdout, ready_text)  # type: ignore[assignment]
    sys.stderr = ReadyWatch(sys.stderr, ready_text)  # type: ignore[assignment]
    sys.argv = ["qualitybridge", *arguments]
    runpy.run_module("qualitybridge", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

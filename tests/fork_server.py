"""`python -m tests.fork_server` (from the checkout's root): imports what `qualitybridge serve` and `qualitybridge
simulator` import, once, then forks a process per request from that state (tests/harness.py, `ForkedProcess`).

Why: the suite starts about 85 server and simulator processes, and each paid its interpreter and its imports
(about 2 of a server start's 2.6 CPU-s, 1.4 s of a simulator's): most of the e2e tier's CPU. A forked process runs
the same command through the same entry point (`python -m qualitybridge ARGS`, or tests/measured_after_start.py
under coverage) in a process of its own, with its own pid, signals, output files, environment and exit status; only
the imports are shared, done before the fork instead of after it.

Protocol: one JSON request per line on stdin ({"args", "ready_text", "env", "cwd", "stdout", "stderr"}), answered
with the new process's pid, one line on stdout. The request is served by a double fork: the intermediate process
exits at once, so the new process is re-parented to the nearest subreaper, the test process (harness:
PR_SET_CHILD_SUBREAPER), which then waits for it and gets its exit status and its CPU (getrusage) as for a child it
started itself.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import runpy
import sys
import threading
import traceback

# The imports a start spends its CPU on, done once here (the commands' own modules import the rest lazily at run).
import qualitybridge.app
import qualitybridge.cli
import qualitybridge.cli.serve
import qualitybridge.cli.simulator
import qualitybridge.simulator.app  # noqa: F401
from tests import measured_after_start
from tests.harness import _exit_code


def _run(request: dict[str, object]) -> int:
    """In the forked process: `qualitybridge ARGS` as the process started for it would run it; its exit status."""
    os.chdir(str(request["cwd"]))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # not the request pipe
    os.close(null)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    # Unbuffered, as PYTHONUNBUFFERED=1 makes a started process: the harness waits for the ready line in the file.
    sys.stdout = io.TextIOWrapper(open(1, "wb", buffering=0, closefd=False), write_through=True)  # noqa: SIM115
    sys.stderr = io.TextIOWrapper(open(2, "wb", buffering=0, closefd=False), write_through=True)  # noqa: SIM115
    sys.stdin = open(os.devnull)  # noqa: SIM115
    environment = request["env"]
    assert isinstance(environment, dict)
    os.environ.clear()
    os.environ.update(environment)
    args = [str(arg) for arg in request["args"]]  # type: ignore[attr-defined]
    try:
        if measured_after_start.DEFERRED_VARIABLE in environment:
            sys.argv = [measured_after_start.__file__, str(request["ready_text"]), *args]
            measured_after_start.main()
        else:
            sys.argv = ["qualitybridge", *args]
            runpy.run_module("qualitybridge", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc, sys.stderr)
    except BaseException:  # an uncaught exception: its traceback and status 1, as the interpreter gives them
        traceback.print_exc()
        code = 1
    # What an interpreter's exit does, in its order: wait for the threads that are not daemons (a server that would
    # hang there must not exit cleanly here), then the exit functions (coverage saves its data in one).
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    return code


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        reading, writing = os.pipe()
        intermediate = os.fork()
        if intermediate == 0:
            os.close(reading)
            child = os.fork()
            if child == 0:
                os.close(writing)
                code = 1
                try:
                    code = _run(request)
                finally:
                    os._exit(code)
            os.write(writing, f"{child}\n".encode())
            os._exit(0)
        os.close(writing)
        with os.fdopen(reading) as answer:
            child_pid = answer.read().strip()
        os.waitpid(intermediate, 0)  # the new process is re-parented to the subreaper once this returns
        sys.stdout.write(f"{child_pid}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

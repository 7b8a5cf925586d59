"""tests/fork_server.py runs a command as the interpreter started for it would, up to its exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_CHILD = """
import os, sys, threading, time
from tests import fork_server

marker_path = sys.argv[1]  # the command gets an argv of its own


def late() -> None:
    time.sleep(0.3)
    with open(marker_path, "w") as marker:
        marker.write("joined")

threading.Thread(target=late).start()  # not a daemon: a real interpreter waits for it before it exits
request = {"args": ["--version"], "ready_text": "", "env": dict(os.environ), "cwd": os.getcwd()}
request |= {"stdout": marker_path + ".out", "stderr": marker_path + ".err"}
os._exit(fork_server._run(request))  # as the forked process ends
"""


def test_a_forked_command_waits_for_its_threads_before_exiting_as_an_interpreter_does(tmp_path: Path) -> None:
    """A server whose exit would hang on a thread it left running must not exit cleanly when forked: the e2e
    tier's stops would hide it."""
    marker = tmp_path / "marker"
    root = Path(__file__).resolve().parents[2]
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, str(marker)], cwd=root, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert marker.exists(), "the command's thread was cut off at its exit"
    assert marker.read_text() == "joined"

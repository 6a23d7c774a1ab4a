"""The one subprocess runner's stop: what it started is gone afterwards, whatever group it is in."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil
from conftest import wait_for

from ute import runner

# A helper that ignores SIGTERM, with a child in a session of its own that ignores it too: an rq
# worker that will not stop, and its work horse.
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
    start_new_session=True)
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(600)
"""


def test_a_helper_that_will_not_stop_is_killed_with_what_it_started(tmp_path: Path) -> None:
    child_pid_file = tmp_path / "child.pid"
    helper = runner.spawn([sys.executable, "-c", STUBBORN, str(child_pid_file)])
    wait_for(lambda: child_pid_file.exists() and child_pid_file.read_text(), "the helper's child")
    child = psutil.Process(int(child_pid_file.read_text()))
    assert os.getpgid(child.pid) != os.getpgid(helper.pid)
    runner.stop([helper], grace_seconds=1)
    assert helper.returncode is not None
    wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, "the child to die")

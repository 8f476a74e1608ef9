"""On a terminal, the worker's log lines carry no raw control characters from a message."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time


def test_console_log_lines_escape_control_characters() -> None:
    main, child = pty.openpty()  # stderr is a terminal, so the console renderer is used
    code = (
        "from rslp import log; log.setup(); log.get().error('dead_lettered', reason='x\\x1b]52;c;cHduZWQ=\\x07y')\n"
        "try:\n    raise RuntimeError('boom\\x1b[2Jz')\nexcept RuntimeError:\n    log.get().exception('handle_failed')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=child, stdout=subprocess.DEVNULL)
    os.close(child)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(30)
    os.close(main)
    assert b"dead_lettered" in out and b"handle_failed" in out
    assert b"\x1b" not in out and b"\x07" not in out
    assert b"RuntimeError: boom\\x1b[2Jz" in out

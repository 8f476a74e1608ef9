"""Runs tasks in a long-lived child process that the worker can stop at any moment.

Why a child process: task code may hold the GIL for minutes (pure-Python loops, C
extensions), hang, or kill its own process (OOM, segfault). In the worker's own
process any of these would starve the lease heartbeat or take the worker down. In a
child, the worker's main thread stays responsive: it can enforce a time limit, hand
the task back on preemption, and survive a crash, then start a fresh child.

The child lives across tasks, so a workflow may cache expensive state in module
globals (the predict step keeps its model loaded). It is started with the *spawn*
method: forking after a gRPC client exists breaks gRPC. It receives the task itself
(the envelope, not its args as strings) and the job header the worker's guard read to
admit it, so a pipeline step neither parses its args nor reads the header again.
While it waits for its first task, it imports the code of the pipeline's steps and
what they import on first use (their module's ``PRELOAD``), so the first pipeline task
does not pay for those imports; a task that arrives meanwhile waits for one module at most.

The child never outlives its worker: on Linux it asks the kernel (``PR_SET_PDEATHSIG``)
to SIGKILL it the moment the worker dies, even by SIGKILL, so a task whose worker was
killed cannot go on writing while another worker redoes it. An idle child is stopped
by closing its pipe, so it exits normally and releases what it registered with
multiprocessing's resource tracker (tqdm's lock, a named semaphore, is one); a child
killed with a signal leaves those behind and the tracker warns about "leaked
semaphore objects" at exit.

This module owns the child's lifecycle and nothing else: it never touches the queue.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, Literal

from rslp.task import Downstream, Task
from rslp.trust import Trust

if TYPE_CHECKING:
    from rslp.jobroot import JobManifest

#: The project whose workflows' code the task process imports before its first task.
PRELOADED_PROJECT = "pipeline"

Kind = Literal["ok", "error", "permanent", "timeout", "crashed", "interrupted"]


@dataclass
class Outcome:
    """How one run ended. ``downstream`` is set on success; ``reason`` otherwise."""

    kind: Kind
    downstream: list[Downstream] = field(default_factory=list)
    reason: str = ""
    traceback: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


class TaskRunner:
    """Owns one child process and runs tasks in it, one at a time."""

    def __init__(self, trust: Trust | None = None, poll_interval: float = 0.05) -> None:
        self.trust = trust or Trust()
        self.poll_interval = poll_interval
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None

    def start(self) -> None:
        """Start the child now (idempotent), so the first task does not wait for it."""
        if self._proc is not None and self._proc.is_alive():
            return
        parent, child = self._ctx.Pipe()
        # Not a daemon: tasks may start process pools of their own (rslearn workers,
        # DataLoader workers), which daemonic processes cannot. stop() ends it explicitly.
        self._proc = self._ctx.Process(
            target=_child_main, args=(child, os.getpid(), self.trust), daemon=False, name="rslp-task"
        )
        self._proc.start()
        child.close()
        self._conn = parent

    def run(
        self,
        task: Task,
        time_limit: float | None,
        scratch_dir: str,
        interrupted: Any,
        grace_to_finish: float = 0.0,
        header: JobManifest | None = None,
    ) -> Outcome:
        """Run ``task`` in the child and wait for it.

        ``interrupted`` is an Event-like object (``is_set()``); once set, the task gets
        ``grace_to_finish`` more seconds, then the child is stopped and the outcome is
        ``interrupted``. Past ``time_limit`` the child is stopped and the outcome is
        ``timeout``. If the child dies, the outcome is ``crashed``. ``header``: the
        task's job header as the guard read it, handed to the task so it is read once.
        """
        self.start()
        assert self._conn is not None and self._proc is not None
        start = time.monotonic()
        deadline = start + time_limit if time_limit else None
        interrupt_deadline: float | None = None
        self._conn.send((task, header, scratch_dir))
        while True:
            now = time.monotonic()
            if interrupted.is_set() and interrupt_deadline is None:
                interrupt_deadline = now + grace_to_finish
            if interrupt_deadline is not None and now >= interrupt_deadline:
                self.stop()
                return Outcome("interrupted", reason="preempted (SIGTERM/SIGINT)", duration=now - start)
            if deadline is not None and now >= deadline:
                self.stop()
                return Outcome("timeout", reason=f"timed out after {time_limit:g}s", duration=now - start)
            result = None
            try:
                if self._conn.poll(self.poll_interval):
                    result = self._conn.recv()
            except (EOFError, OSError):
                pass
            if result is not None:
                break
            if not self._proc.is_alive():
                code = self._proc.exitcode
                self.stop()
                return Outcome("crashed", reason=f"task process died ({_describe_exit(code)})", duration=now - start)
        duration = time.monotonic() - start
        kind, payload, reason, tb = result
        if kind == "ok":
            return Outcome("ok", downstream=[Downstream.model_validate(d) for d in payload], duration=duration)
        return Outcome(kind, reason=reason, traceback=tb, duration=duration)

    def close(self, patience: float = 5.0) -> None:
        """Stop an idle child the clean way: close its pipe and let it exit; :meth:`stop` if it does not."""
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._proc.join(patience)
        self.stop()

    def stop(self) -> None:
        """Stop the child now (SIGTERM, then SIGKILL after 2 s); the next run starts a new one."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(2)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None


#: prctl(2) option: the signal this process gets when the thread that started it dies.
PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process as soon as the worker (``parent_pid``) dies, however it dies.

    Linux only (elsewhere the child still exits when its pipe closes, at its next
    task). The worker starts the child from its main thread, which lives as long as
    the worker, so the signal comes with the worker's death, not a thread's.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the worker died before the request took effect
        os._exit(1)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _child_main(conn: Connection, parent_pid: int, trust: Trust) -> None:
    """The child's loop: receive a task, run it, send back the outcome, repeat; return when the pipe closes."""
    _die_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group; the worker decides what happens to the task.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from rslp import log, registry
    from rslp import trust as operator_trust
    from rslp.errors import PermanentError, typed
    from rslp.text import redact

    operator_trust.configure(trust)  # the worker's flags: what its tasks may unpickle and import
    log.setup()
    _preload(conn, registry.message_modules(PRELOADED_PROJECT))
    while True:
        try:
            task, header, scratch_dir = conn.recv()
        except (EOFError, OSError):
            return
        os.environ["RSLP_SCRATCH_DIR"] = scratch_dir
        tempfile.tempdir = scratch_dir
        try:
            result = registry.get(task.project, task.workflow).run_task(task, header)
            downstream = _check_downstream(result)
            message: tuple[str, Any, str, str] = ("ok", [d.model_dump(mode="json") for d in downstream], "", "")
        except PermanentError as e:
            message = ("permanent", None, typed(e, 500), redact(traceback.format_exc(limit=-8)))
        except BaseException as e:  # noqa: BLE001 - every failure is reported, never raised
            message = ("error", None, typed(e, 500), redact(traceback.format_exc(limit=-8)))
        finally:
            tempfile.tempdir = None
        conn.send(message)


def _preload(conn: Connection, modules: list[str]) -> None:
    """Import ``modules`` and each one's ``PRELOAD`` until a task waits; a failed import is the task's to report."""
    import importlib

    pending = list(modules)
    while pending and not conn.poll(0):
        try:
            module = importlib.import_module(pending.pop(0))
        except Exception:  # noqa: BLE001 - the task that needs it reports the failure in its own words
            continue
        pending += getattr(module, "PRELOAD", ())


def _check_downstream(result: Any) -> list[Downstream]:
    from rslp.errors import PermanentError

    if result is None:
        return []
    if isinstance(result, list) and all(isinstance(d, Downstream) for d in result):
        return result
    raise PermanentError(f"workflow returned {type(result).__name__}; expected None or a list of Downstream")

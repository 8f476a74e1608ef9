"""Claims on shared storage: "this process is working on X", alive exactly as long as its holder.

Two things in a fleet must be done by one holder at a time: fetching a scene into a
job's shared tile store (:mod:`rslp.pipeline.tiles`) and running a task that the queue
delivered twice (:mod:`rslp.worker.task_claim`). Both use the mechanics here:

- **Taken by creating it.** A claim is a small object created only if it is absent:
  ``O_EXCL`` on local disk, a create-only write on gs:// (gcsfs's ``xb`` mode, a
  ``ifGenerationMatch=0`` precondition, which the GCS answers with 412 when the object
  exists). The GCS emulator the tests use (``gcp-storage-emulator``) ignores that
  precondition and overwrites, so on it two takers racing within one write both win:
  the exclusion holds on local disk and on GCS, and only the emulator cannot show it.
- **Alive while refreshed.** A thread of the holder rewrites each of its claims every
  third of ``seconds``; a claim not rewritten for ``seconds`` is stale and is taken
  over (deleted, then created again). Staleness is judged by the modification time the
  store reports, never by the claim's content (empty after a crash between create and
  write, or any date a writer puts there), so the store's clock and the holder's must
  agree within ``seconds``.
- **Given up when the work ends**, however it ends: the holder deletes its claims when
  its block ends, but only those still its own (one taken over while it was silent is
  its new holder's). In a process that leaves SIGTERM to its default (a worker's task
  process, which the worker stops with SIGTERM), a SIGTERM gives the claims up first,
  then ends the process as it would have.

A claim is read back (whose it is) through :func:`rslp.storage.read_bytes`: whoever
can write the job root can replace a claim with a FIFO or a huge object, and a holder
reading its own claim must neither hang nor run out of memory on it.

Limits: a holder whose refresh thread is starved for ``seconds`` may lose its claim to
a taker; two takers of the same stale claim at the same moment may both win. Callers
make both harmless (a scene stored twice keeps the first copy; a task's done marker
makes its second run a skip).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from upath import UPath

from rslp import log, storage

logger = log.get(__name__)

#: The most a claim's content may be: an owner and what it is for (a few hundred bytes written).
CLAIM_LIMIT = 64 * 1024
#: Who holds a claim: this process (a task process runs many tasks; its claims are its own).
OWNER = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Claims:
    """Takes, refreshes, judges and gives up claims whose lease is ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def take(self, path: UPath, about: Mapping[str, Any]) -> bool:
        """Create the claim at ``path`` for this process (``about``: what for); False if a live holder has it."""
        body = json.dumps({"owner": OWNER, **about}).encode()
        for _ in range(2):  # a second try after removing a stale claim
            if storage.create_only(path, body):
                return True
            if not self.stale(path):
                return False
            logger.warning("stale_claim_taken_over", claim=str(path), **about)
            _delete(path)
        return False

    @contextmanager
    def holding(self, wanted: Mapping[UPath, Mapping[str, Any]]) -> Iterator[list[UPath]]:
        """Take what nobody holds of ``wanted`` (path -> about); yield those; keep them fresh until the block ends.

        The claims are given up when the block ends, however it ends, and on SIGTERM
        where the process leaves it to its default (:func:`_given_up_on_sigterm`).
        """
        with _given_up_on_sigterm() as releasing:
            mine = [path for path, about in wanted.items() if self.take(path, about)]
            stop = threading.Event()
            keeper = threading.Thread(target=self._keep_fresh, args=(mine, stop), daemon=True, name="rslp-claims")
            keeper.start()
            try:
                yield mine
            finally:
                releasing()
                stop.set()
                keeper.join()
                for path in mine:
                    if self.ours(path):  # a claim taken over while we were silent is its new holder's
                        _delete(path)

    def left(self, path: UPath) -> float | None:
        """Seconds until the claim at ``path`` goes stale; None if there is none or it is stale already."""
        age = self.age(path)
        if age is None or self._stale_at(age):
            return None
        return self.seconds - max(0.0, age)

    def ours(self, path: UPath) -> bool:
        """Whether the claim at ``path`` is this process's (not taken over, not gone)."""
        return _owner(path) == OWNER

    def age(self, path: UPath) -> float | None:
        """Seconds since the store last saw the claim written; None if there is none."""
        try:
            path.fs.invalidate_cache(path.path)  # an object store's cached listing must not hide a new write
            return time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None

    def stale(self, path: UPath) -> bool:
        """A claim not rewritten for ``seconds``, or dated further than that in the future (by the store's clock)."""
        age = self.age(path)
        return age is not None and self._stale_at(age)

    def _stale_at(self, age: float) -> bool:
        return abs(age) > self.seconds

    def _keep_fresh(self, paths: list[UPath], stop: threading.Event) -> None:
        """Rewrite each of our claims every third of ``seconds`` until ``stop``; never raises."""
        while not stop.wait(self.seconds / 3):
            for path in paths:
                try:
                    body = storage.read_bytes(path, CLAIM_LIMIT, sized=False)
                    if _owner(path, body) == OWNER:
                        path.fs.pipe_file(path.path, body)  # a new modification time
                except (OSError, storage.JobFileError) as e:  # refused, gone or replaced: the next round tries again
                    logger.warning("claim_refresh_failed", claim=str(path), error=str(e))


# fsspec's calls, not UPath's: those add a stat and a listing to each request on an object store.


def _owner(path: UPath, body: bytes | None = None) -> str | None:
    """The owner the claim at ``path`` names (read unless ``body`` is given); None if none or unreadable."""
    try:
        owner = json.loads(storage.read_bytes(path, CLAIM_LIMIT, sized=False) if body is None else body).get("owner")
    except (OSError, ValueError, AttributeError, RecursionError, storage.JobFileError):
        return None
    return owner if isinstance(owner, str) else None


def _delete(path: UPath) -> None:
    """Remove the claim at ``path``; a store that refuses leaves it to go stale (``seconds``), never an error."""
    try:
        path.fs.rm_file(path.path)
    except FileNotFoundError:
        pass
    except OSError as e:  # giving up runs in `finally` blocks, after the work's outcome is settled
        logger.warning("claim_delete_failed", claim=str(path), error=str(e))


@contextmanager
def _given_up_on_sigterm() -> Iterator[Callable[[], None]]:
    """Turn a SIGTERM into an exception (so ``finally`` blocks give claims up), then end the process by it.

    Only where SIGTERM has its default action and only in the main thread: a process
    with its own SIGTERM handler (the worker) keeps it. Yields ``releasing``, to call
    once the claims are being given up, after which a SIGTERM waits for the end of the block.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield lambda: None
        return
    state = {"terminated": False, "releasing": False}

    def on_sigterm(signum: int, frame: Any) -> None:
        state["terminated"] = True
        if not state["releasing"]:
            raise _Terminated

    def releasing() -> None:
        state["releasing"] = True

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield releasing
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if state["terminated"]:
            logger.info("claims_given_up", signal="SIGTERM")
            os.kill(os.getpid(), signal.SIGTERM)


class _Terminated(BaseException):
    """SIGTERM arrived while claims were held; raised to unwind to where they are given up."""

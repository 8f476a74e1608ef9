"""Which queue a command opens for a job: the rule that keeps a manifest from choosing it.

A job's manifest records the queue write-jobs used, and whoever can write the job root
can write the manifest. So a queue read from a manifest is trusted only as far as
looking goes:

- commands that only look (``rslp status``, ``dlq list``, ``dlq show``) open the
  manifest's queue read-only: an embedded queue with SQLite's ``mode=ro`` (no table
  created, the journal mode left as it is), on Pub/Sub nothing created, what was read
  handed back;
- commands that act on a queue (``dlq replay``, ``launch --deadline``, ``fleet
  autoscale``) act on the queue ``--queue`` names. Without it they take the manifest's
  queue only when it is the job root's own embedded queue on this machine (the file
  write-jobs and run place from the job root's path, :func:`default_queue_url`), which a
  manifest cannot point anywhere else; any other queue (another file, a Pub/Sub
  project) must be named. Either way the command says which queue it acts on.
"""

from __future__ import annotations

from rslp.errors import PermanentError
from rslp.queue.placement import default_queue_url
from rslp.storage import absolute


class UnnamedQueueError(PermanentError):
    """A command would act on a queue that only a job's manifest names."""


def queue_to_act_on(job_root: str, recorded: str | None, given: str | None, command: str) -> str:
    """The queue ``command`` acts on for ``job_root``: ``given``, else ``recorded`` if it is the root's own.

    Raises :class:`UnnamedQueueError`, naming the flag to add, when the manifest's queue
    (``recorded``) is not the job root's own embedded queue.
    """
    if given:
        return given
    own = default_queue_url(absolute(job_root))
    if recorded and recorded == own:
        return recorded
    if not recorded:
        raise UnnamedQueueError(f"{job_root}: the job's manifest names no queue; pass --queue")
    raise UnnamedQueueError(
        f"{job_root}: the job's manifest names the queue {recorded[:200]}; `{command}` acts only on a queue "
        f"you name: add --queue {recorded[:200]} if it is yours"
    )

"""How long a launched worker waits for work before it exits, per pool.

A worker started by hand keeps the worker's own short default (10 s): it drains a
queue that is already full. A launched worker sits in a pipeline, where its queue is
empty for stretches while other pools feed it:

- A GPU worker (the predict pool) is fed by the CPU pools (create windows, prepare,
  ingest, materialize). Its queue is empty until the first partitions come through
  those steps, and again whenever predict runs ahead of them. Exiting then throws the
  GPU back to Beaker: a new worker waits to be scheduled (minutes on a busy cluster,
  at low priority) and loads the model again, while the CPU pools keep producing
  work nobody predicts. :data:`GPU_IDLE_TIMEOUT` (30 min) outlasts the CPU steps of a
  partition with room to spare; it costs at most 30 idle GPU-minutes per worker once
  the job has drained.
- A CPU worker is cheap to keep and cheap to restart, but its pool also waits on
  others (postprocess and combine wait for predict): :data:`CPU_IDLE_TIMEOUT` (10 min).

``--idle_timeout`` on ``rslp launch`` (or ``common launch``) overrides both.
"""

from __future__ import annotations

GPU_IDLE_TIMEOUT = 1800
CPU_IDLE_TIMEOUT = 600


def default_idle_timeout(gpus: int) -> int:
    """The idle timeout of a launched worker with ``gpus`` GPUs, when none is given."""
    return GPU_IDLE_TIMEOUT if gpus > 0 else CPU_IDLE_TIMEOUT

"""Where a job stands, read from its job root and its queue; nothing here changes a job.

- :mod:`~rslp.status.model`: the read model: each task's state from the markers,
  throughput, top failure reasons, as data (start here); :mod:`~rslp.status.queue_view`
  adds what the queue says (backlogs, the job's dead letters), and
  :mod:`~rslp.status.liveness` which running tasks still have a heartbeat.
- :mod:`~rslp.status.render`: the report a user reads in a terminal.
- :mod:`~rslp.status.command`: ``rslp status`` itself (``--watch``, ``--map``, ``--root``).
- :mod:`~rslp.status.map`: the job's partitions on a map, coloured by state.
- :mod:`~rslp.status.history`: ``rslp status --root``: a rolling root's periods.

Nothing here writes: replaying dead letters is :mod:`rslp.dlq`'s, and a job's drift
(``observe.json``) is computed by its pipeline step, :mod:`rslp.pipeline.observe`.

Markers are read with one listing per step, never one read per task, so status on a
50,000-task job on gs:// costs a handful of requests, not 50,000.
"""

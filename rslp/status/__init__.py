"""Where a job stands, read from its job root and its queue; nothing here changes a job.

- :mod:`~rslp.status.report`: ``rslp status``: per-step counts, throughput, ETA,
  backlog, top failure reasons, drift warning (start here).
- :mod:`~rslp.status.map`: the job's partitions on a map, coloured by state.
- :mod:`~rslp.status.dlq`: ``rslp dlq list|show|replay``: dead letters, and replaying
  them after a fix (the one command here that writes: it republishes and acks).
- :mod:`~rslp.status.observe`: class distribution of a job's output and its drift
  against a reference.

Markers are read with one listing per step, never one read per task, so status on a
50,000-task job on gs:// costs a handful of requests, not 50,000.
"""

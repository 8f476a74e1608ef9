"""The rslearn batch-inference pipeline: one job = one pipeline config over one request.

- :mod:`~rslp.pipeline.config`: ``pipeline.yaml``, validated, once per process.
- :mod:`~rslp.pipeline.configfile`: reading a config file: bounded, strict ``${VAR}``, no YAML aliases.
- :mod:`~rslp.pipeline.partition`: requests, partitioners (job -> partitions -> windows).
- :mod:`~rslp.pipeline.job`: the job root's layout and what a step needs from it.
- :mod:`~rslp.pipeline.steps`: the registered workflows, one handler per step (thin), each given its task.
- :mod:`~rslp.pipeline.rslearn_ops`: windows, prepare, ingest, materialize, each verified.
- :mod:`~rslp.pipeline.predict`: the model, loaded once per process, and predict.
- :mod:`~rslp.pipeline.postprocess`: window outputs -> partition file -> job output.
- :mod:`~rslp.pipeline.write_jobs`, :mod:`~rslp.pipeline.run`, :mod:`~rslp.pipeline.demo`:
  the user-facing entry points.

Importing this package (or ``steps``) imports neither torch nor rslearn: a worker that
only runs diagnostics must start fast.
"""

import os

# rslearn gives each of its loggers a stdout handler at INFO when first imported, and
# logs every batch; the steps log their own summaries. Set before any rslearn import;
# export RSLEARN_LOGLEVEL=INFO to see rslearn's lines again.
os.environ.setdefault("RSLEARN_LOGLEVEL", "WARNING")

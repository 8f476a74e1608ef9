"""``rslp dashboard``: a live, read-only page on one job (or a rolling root's periods) in a browser.

- :mod:`~rslp.dashboard.model`: the JSON the page shows, built from the read model
  ``rslp status`` uses (:mod:`rslp.status`); every string in it is data for the page.
- :mod:`~rslp.dashboard.snapshot`: reads the job root in the background, one refresh
  at a time, and keeps only the last view, so a request never lists anything.
- :mod:`~rslp.dashboard.server`: the HTTP server (standard library), its token and
  host checks, and the command.
- ``static/``: the page itself (plain HTML, JS and CSS: nothing fetched from elsewhere).

Nothing here changes a job: no marker is written, no message pulled or acked.
"""

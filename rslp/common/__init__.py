"""The ``common`` project: the fleet's own workflows (worker, launch) and diagnostics."""

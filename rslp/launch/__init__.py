"""Launching, watching and stopping fleets of rslp workers, on Beaker or on this machine.

``fleet`` is the seam (worker names, the client protocol, status and stop), free of
beaker-py; ``config`` says what a fleet is (image, resources, mounts, the worker's
settings); ``beaker`` turns that into experiment specs and talks to Beaker; ``local``
runs the same specs as processes here; ``commands`` is what a user runs.
"""

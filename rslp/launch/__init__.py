"""Launching, watching and stopping fleets of rslp workers on Beaker.

``config`` says what a fleet is (image, resources, mounts, the worker's queue
arguments); ``beaker`` turns that into experiment specs and talks to Beaker through
one thin, fakeable client; ``commands`` is what a user runs (launch, status, stop).

The error types live here, free of imports, so the CLI can catch them without
loading beaker-py for every subcommand.
"""


class FleetError(Exception):
    """A fleet operation failed for a reason the user can act on; the message is one line."""


class FleetTimeoutError(FleetError):
    """A Beaker call did not finish within its deadline (no network, or Beaker is down)."""

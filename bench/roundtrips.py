"""Storage round trips: what one partition's tasks ask of the job root's storage, step by step.

One partition of the demo job (tasks/demo) goes through every per-partition step in
one process, each step as a worker takes it: the worker's part (:func:`guard.admit`,
which reads the header and looks for a done marker; the task claim it takes next and
gives up at the end, :mod:`rslp.worker.task_claim`; the ``running`` marker its heartbeat
writes first; the ``done`` marker at the end) and the task's part (the step run as the
task process runs it: from the task and the header the guard read; the baseline parsed
the task's CLI args). The claim's refresh while a task runs is not counted per task: on
GCS it is one read and one write every third of the claim's period (4 s) per running
task, so the child lengthens the period to keep the counts exact. Each part is
counted separately, on local disk and on the GCS emulator, for the old code (commit
175f73b) and the new, both in the same run, each in a child process whose
``PYTHONPATH`` is its code.

How a round trip is counted, only for paths under the job root (the demo's imagery is
the work's input, not the fleet's):

- **GCS**: every HTTP request gcsfs sends (``GCSFileSystem._call``): ``GET b/../o``
  is a listing, ``GET b/../o/<name>`` a stat (exists, info), any other GET a read
  (media download), an upload, copy, compose or patch a write, a DELETE a delete.
- **local disk**: paths there are ``PosixUPath``, plain pathlib, so fsspec never sees
  them; the Python-level calls are counted instead: ``open`` (audit hook; read or write
  by its flags), ``os.listdir``/``os.scandir`` (listings), ``os.stat``/``os.lstat``
  (stats: exists, is_dir...), ``os.rename``/``os.replace`` (writes), ``os.mkdir`` and
  removals (other). GDAL's own file access (rasterio opening a GeoTIFF by name)
  bypasses Python and is not in these counts; on GCS the same reads go through fsspec
  and are.

Goal: on GCS, where each request is a network round trip, no step's worker part grows
but by the task claim (the "never run twice at once" guarantee; the baseline had none),
and no task part reads, writes or lists more (its stats move by a dozen between runs of
the same code: gcsfs answers some from its listing cache).
On local disk the counts are exact; there the stats grew since the baseline by the
symlink checks of job-root paths (one ``lstat`` per path component below the root,
:func:`rslp.paths.under`), which no object store needs (GCS counts move by a few between runs of the
same code: gcsfs answers some stats from its listing cache). ``ROUNDTRIPS_TRACE=1``
makes each child print every GCS request it counts.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

KINDS = ("read", "write", "list", "stat", "other")
PARTITION = "p00000"
#: The kinds of request whose GCS counts are stable between runs (stats are not: gcsfs's listing cache).
STABLE = ("read", "write", "list", "other")
#: ``ROUNDTRIPS_TRACE=1``: the child prints each counted GCS request to stderr (which call made it).
TRACE = os.environ.get("ROUNDTRIPS_TRACE") == "1"


# -- the child: runs under whichever rslp PYTHONPATH names ------------------------------


class Counts:
    """Round trips by kind, to paths under ``root`` only, while ``active``."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.counts: Counter[str] = Counter()
        self.active = False

    def hit(self, kind: str, path: Any) -> None:
        if self.active and isinstance(path, str | bytes | os.PathLike) and os.fsdecode(path).startswith(self.root):
            self.counts[kind] += 1

    @contextlib.contextmanager
    def counting(self) -> Iterator[Counter[str]]:
        self.counts = Counter()
        self.active = True
        try:
            yield self.counts
        finally:
            self.active = False


def count_local(root: str) -> Counts:
    """Count Python's file-system calls under ``root`` (audit hook for events, wrappers for stat)."""
    counts = Counts(root)
    events = {
        "os.listdir": "list",
        "os.scandir": "list",
        "os.rename": "write",  # os.replace raises os.rename too
        "os.mkdir": "other",
        "os.remove": "other",
        "os.rmdir": "other",
    }

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and args:
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
            write = flags & (os.O_WRONLY | os.O_RDWR) or any(c in mode for c in "wax+")
            counts.hit("write" if write else "read", args[0])
        elif event in events and args:
            counts.hit(events[event], args[0])

    sys.addaudithook(hook)
    for name in ("stat", "lstat"):
        real = getattr(os, name)

        def wrapped(path: Any, *a: Any, _real: Callable[..., Any] = real, **k: Any) -> Any:
            counts.hit("stat", path)
            return _real(path, *a, **k)

        setattr(os, name, wrapped)
    return counts


def count_gcs(root: str) -> Counts:
    """Count every HTTP request gcsfs makes for objects under ``root`` (``gs://bucket/prefix``)."""
    import gcsfs

    bucket, _, prefix = root.removeprefix("gs://").partition("/")
    counts = Counts(prefix)
    real = gcsfs.GCSFileSystem._call

    def kind(method: str, path: str) -> str:
        if method == "GET":
            return "list" if path == "b/{}/o" else "stat" if path.startswith("b/") else "read"
        return "other" if method == "DELETE" or "batch" in path else "write"

    async def call(self: Any, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        # The object's name: the template's second argument, an upload's name=, or the prefix listed.
        name = str(args[1]) if len(args) > 1 else kwargs.get("prefix") or kwargs.get("name") or ""
        if not name and "name=" in path:
            from urllib.parse import unquote

            name = unquote(path.split("name=", 1)[1].split("&", 1)[0])
        if not name and "/o/" in path and path.startswith("http"):
            from urllib.parse import unquote

            name = unquote(path.split("/o/", 1)[1].split("?", 1)[0])
        if counts.active and (name.startswith(prefix) or (not name and args[:1] == (bucket,))):
            counts.counts[kind(method.upper(), path)] += 1
            if TRACE:
                print(f"roundtrip {kind(method.upper(), path)} {method} {path} {name}", file=sys.stderr)
        return await real(self, method, path, *args, **kwargs)

    gcsfs.GCSFileSystem._call = call  # type: ignore[method-assign]
    return counts


def child(job_root: str, config: str, request: str) -> None:
    """Plan the demo job into ``job_root`` and count each step of one partition; print JSON by step."""
    counts = count_gcs(job_root) if job_root.startswith("gs://") else count_local(job_root)

    from rslp import registry

    try:
        from rslp.jobroot import JobRoot
    except ImportError:  # the baseline's code, from before issue 22: the same class, named Ledger
        from rslp.ledger import Ledger as JobRoot  # type: ignore[no-redef]
    from rslp.pipeline.config import load_pipeline_config
    from rslp.pipeline.job import make_task
    from rslp.pipeline.write_jobs import create_job
    from rslp.worker import guard

    try:
        from rslp.worker import task_claim

        task_claim.CLAIM_SECONDS = 3600.0  # no refresh during a step: each count is exact (see the docstring)
    except ImportError:  # the baseline's code: no task claims
        task_claim = None  # type: ignore[assignment]

    pipeline = load_pipeline_config(config)
    manifest = create_job(pipeline, request, job_root, queue=None, job_id="roundtrips")
    out: dict[str, Any] = {}
    for step in pipeline.partition_steps:
        task = make_task(manifest.job_id, job_root, step, PARTITION)
        started = time.perf_counter()
        with counts.counting() as worker_admit:
            admitted = guard.admit(task, [job_root] if "://" in job_root else [])
        with counts.counting() as claim_take:
            claim = task_claim.TaskClaim(JobRoot(job_root), task, "bench") if task_claim else None
            if claim is not None and not claim.take():
                raise RuntimeError(f"{step} of {PARTITION} is claimed by another worker")
        with counts.counting() as worker_running:
            JobRoot(job_root).mark(task, "running", worker="bench", lease_seconds=60, heartbeat=time.time())
        workflow = registry.get("pipeline", step)
        with counts.counting() as task_part:
            if hasattr(workflow, "run_task"):  # the task and the header the guard read (issue 22)
                downstream = workflow.run_task(task, admitted.manifest)
            else:  # the baseline: the task's CLI args, parsed in the task process
                downstream = workflow.run(task.args)
        with counts.counting() as worker_done:
            done = [d.model_dump(mode="json") for d in downstream or []]
            JobRoot(job_root).mark(task, "done", worker="bench", duration=1.0, downstream=done)
        with counts.counting() as claim_give_up:
            if claim is not None:
                claim.give_up()
        if admitted.done_downstream is not None:
            raise RuntimeError(f"{step} of {PARTITION} was already done before it ran")
        claim_part = claim_take + claim_give_up
        worker = worker_admit + claim_part + worker_running + worker_done
        seconds = round(time.perf_counter() - started, 2)
        out[step] = {"worker": dict(worker), "claim": dict(claim_part), "task": dict(task_part), "seconds": seconds}
    print(json.dumps(out))


# -- the parent: every code and storage, in one run --------------------------------------


def measure(code: Path, job_root: str, scratch: Path) -> dict[str, Any]:
    """Run the child under ``code``'s rslp; its counts by step."""
    import subprocess

    from bench.baseline import child_command
    from bench.harness import REPO, child_env

    demo = REPO / "tasks" / "demo"
    scratch.mkdir(parents=True, exist_ok=True)
    cmd = child_command(Path(__file__).resolve(), job_root, str(demo / "pipeline.yaml"), str(demo / "request.geojson"))
    env = {**child_env(), "PYTHONPATH": str(code)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=scratch, timeout=600, check=False)
    if proc.returncode:
        raise RuntimeError(f"round-trip count under {code} failed: {proc.stderr.strip()[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def total(row: dict[str, int]) -> int:
    return sum(row.get(k, 0) for k in KINDS)


def run(storages: tuple[str, ...] = ("local", "gcs"), compare: bool = True) -> dict[str, Any]:
    """Counts by step for the new code (and the baseline, if ``compare``) on each storage."""
    from bench.baseline import BASELINE, baseline_tree, short
    from bench.harness import REPO, scratch_dir
    from bench.pipeline import demo_data
    from rslp.testing.gcs_emulator import BUCKET, running_gcs_emulator

    demo_data()
    result: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(scratch_dir("roundtrips"))
        trees = {"new": REPO}
        if compare:
            trees["old"] = stack.enter_context(baseline_tree())
        if "gcs" in storages:
            stack.enter_context(running_gcs_emulator())
        for storage in storages:
            for name, code in trees.items():
                root = f"gs://{BUCKET}/roundtrips-{name}" if storage == "gcs" else str(scratch / f"{name}-job")
                result[f"{storage}_{name}"] = measure(code, root, scratch / f"{storage}-{name}")
    per_task = {
        key: round(sum(total(s["worker"]) + total(s["task"]) for s in steps.values()) / len(steps), 1)
        for key, steps in result.items()
    }
    result["round_trips_per_task"] = per_task
    worker = {
        key: round(sum(total(s["worker"]) for s in steps.values()) / len(steps), 1)
        for key, steps in result.items()
        if key != "round_trips_per_task"
    }
    result["worker_round_trips_per_task"] = worker
    result["baseline"] = short(BASELINE) if compare else None
    if compare and "gcs" in storages:
        result["goal"] = (
            "on GCS, each step's worker requests grow by the task claim only, and its task part reads, writes "
            "and lists no more (stats vary between runs: gcsfs answers some from its listing cache)"
        )
        old, new = result["gcs_old"], result["gcs_new"]
        result["goal_met"] = all(
            total(new[step]["worker"]) - total(new[step].get("claim", {})) <= total(old[step]["worker"])
            and all(new[step]["task"].get(k, 0) <= old[step]["task"].get(k, 0) for k in STABLE)
            for step in new
        )
    result["summary"] = "round trips per task (mean over the partition's steps): " + ", ".join(
        f"{k.replace('_', ' ')} {v:g}" for k, v in per_task.items()
    )
    return result


def table(steps: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """A Markdown table of one code's counts by step (``old -> new`` per cell when ``old`` is given)."""

    def cell(step: str, part: str, kind: str) -> str:
        new = steps[step][part].get(kind, 0)
        if old is None:
            return str(new)
        before = old[step][part].get(kind, 0)
        return str(new) if before == new else f"{before} → {new}"

    def claim(step: str) -> str:
        new = total(steps[step].get("claim", {}))
        before = total(old[step].get("claim", {})) if old is not None else new
        return str(new) if before == new else f"{before} → {new}"

    head = ["step", *(f"worker {k}" for k in KINDS), "of which claim", *(f"task {k}" for k in KINDS), "total"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for step in steps:
        cells = [cell(step, "worker", k) for k in KINDS] + [claim(step)] + [cell(step, "task", k) for k in KINDS]
        new_total = total(steps[step]["worker"]) + total(steps[step]["task"])
        if old is not None:
            old_total = total(old[step]["worker"]) + total(old[step]["task"])
            cells.append(str(new_total) if old_total == new_total else f"{old_total} → {new_total}")
        else:
            cells.append(str(new_total))
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines


def markdown(result: dict[str, Any]) -> list[str]:
    """One table per storage: counts by step, ``old → new`` where they differ."""
    lines: list[str] = []
    for storage, label in (("local", "Local disk"), ("gcs", "GCS emulator (HTTP requests)")):
        if f"{storage}_new" not in result:
            continue
        lines += ["", f"{label}, partition {PARTITION} of tasks/demo, {result['baseline'] or 'new'} → new:", ""]
        lines += table(result[f"{storage}_new"], result.get(f"{storage}_old"))
    return lines


TITLE = "15. Storage round trips per task per step: local disk and GCS emulator, 175f73b vs new"

if __name__ == "__main__":
    if len(sys.argv) == 4:  # the child: JOB_ROOT CONFIG REQUEST
        child(*sys.argv[1:])
    else:
        from bench import sections
        from bench.harness import print_result

        print_result("roundtrips", sections.main(TITLE, "roundtrips"))

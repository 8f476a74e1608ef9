"""Per-task overhead: no-op tasks through one real worker, against a raw pull/ack loop.

A ``common noop`` task does nothing, so everything a worker spends on it is the
fleet's own cost: pull and lease, decode, hand the task to the task process (args
parsed there), wait for the answer, ack, log. Measured on the embedded queue and on
the emulator, each against the floor of that backend: a loop that pulls one message
and acks it (the google-cloud-pubsub SubscriberClient for the emulator, the
LocalQueue itself for the embedded queue), with nothing in between.

Figures: tasks/s from the worker's first ``received`` to its last ``done`` (start-up
is the cold-start benchmark's business), and the gap between one task's ``done`` and
the next task's ``started`` (p50 and p99), from the worker's own log timestamps.
Goal: gap p50 under 50 ms on the embedded queue.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.harness import (
    PROJECT,
    Backend,
    backend,
    emulator,
    enqueue,
    fresh_topic,
    median,
    ms,
    percentile,
    print_result,
    run_workers,
    scratch_dir,
)

TASKS = 300
GAP_GOAL_S = 0.050


def worker_run(b: Backend, scratch: Path, tasks: int) -> dict[str, float]:
    """``tasks`` no-ops through one worker: tasks/s and done-to-started gaps."""
    with b.open() as q:
        topic = fresh_topic(q, "noop")
        enqueue(q, topic, "noop", [[] for _ in range(tasks)])
    [w] = run_workers(b.url, topic, scratch, 1, timeout=120, idle_timeout=1)
    done = w.times("done")
    if len(done) != tasks:
        raise RuntimeError(f"worker finished {len(done)} of {tasks} tasks; output: {w.raw[-5:]}")
    gaps = w.gaps()
    return {
        "tasks_per_s": tasks / (done[-1] - w.times("received")[0]),
        "gap_p50_s": percentile(gaps, 50),
        "gap_p99_s": percentile(gaps, 99),
    }


def raw_run(b: Backend, tasks: int) -> float:
    """Messages/s of a bare pull(1) + ack loop over ``tasks`` messages."""
    with b.open() as q:
        topic = fresh_topic(q, "raw")
        enqueue(q, topic, "noop", [[] for _ in range(tasks)])
        if b.name == "embedded":
            start = time.perf_counter()
            for _ in range(tasks):
                for m in q.pull(topic, 60):
                    q.ack(m)
            return tasks / (time.perf_counter() - start)
    return _raw_pubsub(topic, tasks)


def _raw_pubsub(subscription: str, tasks: int) -> float:
    from google.cloud import pubsub_v1

    client = pubsub_v1.SubscriberClient()
    path = client.subscription_path(PROJECT, subscription)
    acked = 0
    start = time.perf_counter()
    try:
        while acked < tasks:
            response = client.pull(request={"subscription": path, "max_messages": 1}, timeout=10)
            ack_ids = [r.ack_id for r in response.received_messages]
            if ack_ids:
                client.acknowledge(request={"subscription": path, "ack_ids": ack_ids})
                acked += len(ack_ids)
            if time.perf_counter() - start > 120:
                raise RuntimeError(f"raw pull loop got {acked} of {tasks} messages in 120 s")
        return tasks / (time.perf_counter() - start)
    finally:
        client.close()


def run(repeats: int = 3, tasks: int = TASKS) -> dict[str, Any]:
    """Median figures over ``repeats`` runs on each backend."""
    out: dict[str, Any] = {"tasks_per_run": tasks, "repeats": repeats}
    with emulator():
        for name in ("embedded", "emulator"):
            runs, raws = [], []
            for _ in range(repeats):
                with scratch_dir("overhead") as scratch:
                    b = backend(name, scratch)
                    runs.append(worker_run(b, scratch, tasks))
                    raws.append(raw_run(b, tasks))
            worker_rate = median([r["tasks_per_s"] for r in runs])
            raw_rate = median(raws)
            out[name] = {
                "worker_tasks_per_s": round(worker_rate, 1),
                "raw_pull_ack_per_s": round(raw_rate, 1),
                "worker_vs_raw": round(worker_rate / raw_rate, 3),
                "gap_p50_ms": ms(median([r["gap_p50_s"] for r in runs])),
                "gap_p99_ms": ms(median([r["gap_p99_s"] for r in runs])),
                "per_task_cost_ms": ms(1 / worker_rate),
            }
    out["summary"] = "; ".join(
        f"{n}: {out[n]['worker_tasks_per_s']:g} tasks/s ({out[n]['per_task_cost_ms']:g} ms a task, raw pull+ack "
        f"{out[n]['raw_pull_ack_per_s']:g}/s), gap p50 {out[n]['gap_p50_ms']:g} ms, p99 {out[n]['gap_p99_ms']:g} ms"
        for n in ("embedded", "emulator")
    )
    out["goal"] = "gap p50 < 50 ms on the embedded queue"
    out["goal_met"] = out["embedded"]["gap_p50_ms"] < GAP_GOAL_S * 1000
    return out


if __name__ == "__main__":
    print_result("overhead", run())

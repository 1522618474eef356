"""Races for the store's contract tests: every job released at once on one barrier."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor


def run_together(*jobs):
    """Start every job on one barrier and return their results (re-raising any error)."""
    barrier = threading.Barrier(len(jobs))

    def released(job):
        barrier.wait(timeout=30)
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return [f.result(timeout=120) for f in [pool.submit(released, job) for job in jobs]]

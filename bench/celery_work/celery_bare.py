"""A bare Celery application doing ``celery_jobs.work`` per task, for ``bench/celery.py``:
untracked, or (``BENCH_TRACK=1``) tracked with ``runboard.celery.track_tasks``.  Each task
appends ``[published, started, ended, task id]`` (``time.time()``) to a Redis list, which is how the
benchmark knows when the last one ended without a result backend."""
from __future__ import annotations

import json
import os
import time

import redis
from celery import Celery

from celery_jobs import work

app = Celery("bench_bare", broker=os.environ["BENCH_BROKER"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True,
                task_default_queue=os.environ["BENCH_QUEUE"], broker_connection_retry_on_startup=True)
_times = redis.Redis.from_url(os.environ["BENCH_BROKER"])


@app.task(name="bench.short_task", bind=True)
def short_task(self, published: float) -> dict:
    started = time.time()
    value = work()
    _times.rpush(os.environ["BENCH_QUEUE"] + ":times", json.dumps([published, started, time.time(), self.request.id]))
    return {"value": value}


if os.environ.get("BENCH_TRACK") == "1":
    from runboard.celery import track_tasks

    track_tasks(app)

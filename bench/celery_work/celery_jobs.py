"""The short job of ``bench/celery.py``, as a Runboard kind (``RUNBOARD_KINDS=celery_jobs:KINDS``, this folder on PYTHONPATH)
and as a bare Celery task (``celery_bare.py``): the same work either way."""
from __future__ import annotations

WORK = 20_000          # ~1 ms of arithmetic: a job short enough that tracking is what costs


def work() -> int:
    return sum(i * i for i in range(WORK))


def run(context, params) -> dict:
    context.progress(current=0, total=1, step="work")
    value = work()
    context.progress(current=1, total=1)
    return {"value": value}


def _kinds():
    from webapp.runner import JobKind, Params

    class ShortParams(Params):
        pass

    return [JobKind("bench.short", run, ShortParams, "bench/celery.py's short job")]


KINDS = _kinds()

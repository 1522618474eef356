"""An example kind of one's own: ``word_count`` counts the words of ``text``, ``repeat`` times.

Runboard loads it through the ``runboard.kinds`` entry point (see pyproject.toml), so the
module is imported by Runboard's own process, where ``webapp`` is importable: that is why
it may import ``webapp.runner.kinds`` at the top and why the package declares no dependency.
"""
from __future__ import annotations

from collections import Counter
from typing import Annotated

import pydantic

from webapp.runner.kinds import JobContext, JobKind, Params


class WordCountParams(Params):
    text: Annotated[str, pydantic.Field(min_length=1, max_length=100_000)]
    repeat: Annotated[int, pydantic.Field(ge=1, le=1_000_000)] = 1


def run(ctx: JobContext, params: WordCountParams) -> dict:
    """One pass per repeat; a stop ends the run with the counts of the passes done."""
    words = params.text.lower().split()
    counts: Counter[str] = Counter()
    done = 0
    while done < params.repeat and not ctx.should_stop():
        counts.update(words)
        done += 1
        ctx.progress(current=done, total=params.repeat, step="counting")
    ctx.log("info", "counted", passes=done, distinct=len(counts))
    return {"passes": done, "words": sum(counts.values()), "distinct": len(counts),
            "top": dict(counts.most_common(10))}


KINDS = [JobKind("word_count", run, WordCountParams, "Count the words of a text, repeat times")]

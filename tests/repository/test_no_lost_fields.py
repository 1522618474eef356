"""Guarantee 4: no progress report can drop a key it did not name.

This product began with a progress update that wiped ``user`` and ``original_filename``;
these tests pin the merge down with fixed cases and with random nested patches checked
against an independent reading of RFC 7396.
"""
from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings, strategies as st

from repositories.states import State

KEYS = st.sampled_from(["a", "b", "c", "current", "total", "step", "user", "original_filename"])
SCALARS = st.one_of(st.booleans(), st.integers(-1000, 1000), st.text(max_size=8),
                    st.floats(allow_nan=False, allow_infinity=False, width=32))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)), max_leaves=8)
PATCHES = st.recursive(
    st.dictionaries(KEYS, st.one_of(st.none(), JSON_VALUES), max_size=4),
    lambda inner: st.dictionaries(KEYS, st.one_of(st.none(), JSON_VALUES, inner), max_size=4),
    max_leaves=10)


def reference_merge(target, patch):
    """RFC 7396 §2, written from the pseudo-code, independent of repositories.merge."""
    if isinstance(patch, dict):
        result = copy.deepcopy(target) if isinstance(target, dict) else {}
        for name, value in patch.items():
            if value is None:
                result.pop(name, None)
            else:
                result[name] = reference_merge(result.get(name), value)
        return result
    return copy.deepcopy(patch)


def test_a_progress_report_keeps_owner_label_params_and_meta_it_did_not_name(repo):
    session = repo.create(kind="analysis", owner="ana@example.com", label="survey.xlsx",
                          params={"sheet": 2}, meta={"user": "ana", "original_filename": "survey.xlsx"})
    repo.start(session.id)
    repo.report_progress(session.id, progress={"current": 5, "total": 10, "step": "parse"},
                         meta={"rows": 10})
    stored = repo.get(session.id)
    assert (stored.owner, stored.label, stored.kind, stored.params) == (
        "ana@example.com", "survey.xlsx", "analysis", {"sheet": 2})
    assert stored.meta == {"user": "ana", "original_filename": "survey.xlsx", "rows": 10}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patches=st.lists(st.tuples(PATCHES, PATCHES), min_size=1, max_size=4))
def test_every_report_equals_rfc_7396_applied_to_what_was_stored(repo, patches):
    session = repo.create(kind="analysis", owner="ana@example.com", label="in.csv",
                          params={"p": 1}, meta={"user": "ana", "original_filename": "in.csv"})
    repo.start(session.id)
    progress, meta = {}, dict(session.meta)
    for progress_patch, meta_patch in patches:
        repo.report_progress(session.id, progress=progress_patch, meta=meta_patch)
        if progress_patch:
            progress = reference_merge(progress, progress_patch)
            current, total = progress.get("current"), progress.get("total")
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (current, total))
            if "percent" not in progress_patch and numeric and total > 0:
                progress["percent"] = round(min(max(current / total * 100, 0), 100), 1)
        if meta_patch:
            meta = reference_merge(meta, meta_patch)
        stored = repo.get(session.id)             # after every report, not only the last
        assert stored.progress == progress
        assert stored.meta == meta
        assert (stored.owner, stored.label, stored.kind, stored.params) == (
            "ana@example.com", "in.csv", "analysis", {"p": 1})
        assert stored.state is State.RUNNING


def test_reports_that_name_only_meta_or_only_usage_keep_everything_else(repo):
    session = repo.create(kind="analysis", owner="ana", label="a.csv", meta={"engine": "numpy"})
    repo.start(session.id)
    repo.report_progress(session.id, progress={"current": 1, "total": 2, "step": "load"})
    repo.report_progress(session.id, meta={"gpu": "a100"})
    repo.report_progress(session.id, usage={"tokens": 3, "cost": 0.5})
    stored = repo.get(session.id)
    assert stored.progress == {"current": 1, "total": 2, "step": "load", "percent": 50.0}
    assert stored.meta == {"engine": "numpy", "gpu": "a100"}
    assert stored.usage == {"tokens": 3, "cost": 0.5}


def test_a_report_sending_owner_or_label_keys_only_touches_progress_and_meta(repo):
    session = repo.create(kind="analysis", owner="ana", label="a.csv", params={"p": 1},
                          meta={"owner": "ana", "original_filename": "a.csv"})
    repo.start(session.id)
    repo.report_progress(session.id, progress={"owner": "mallory", "label": None, "params": {}},
                         meta={"owner": "mallory", "original_filename": None})
    stored = repo.get(session.id)
    assert (stored.owner, stored.label, stored.params) == ("ana", "a.csv", {"p": 1})
    assert stored.progress == {"owner": "mallory", "params": {}}
    assert stored.meta == {"owner": "mallory"}


NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False, width=32))
# Reports that decide ``percent`` alone (numeric current and total, or percent itself): the
# SQLite store merges these inside the database with json_patch, so they are checked on
# their own against the reference, whatever was stored before.
SELF_CONTAINED = st.one_of(
    st.tuples(PATCHES, NUMBERS, NUMBERS).map(lambda t: {**t[0], "current": t[1], "total": t[2]}),
    st.tuples(PATCHES, st.one_of(st.none(), NUMBERS)).map(lambda t: {**t[0], "percent": t[1]}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=PATCHES, reports=st.lists(SELF_CONTAINED, min_size=1, max_size=4))
def test_reports_carrying_current_and_total_or_percent_merge_like_the_reference(repo, first, reports):
    session = repo.create(kind="analysis", owner="ana", label="in.csv")
    repo.start(session.id)
    repo.report_progress(session.id, progress=first)
    expected = repo.get(session.id).progress
    for patch in reports:
        repo.report_progress(session.id, progress=patch)
        expected = reference_merge(expected, patch)
        current, total = expected.get("current"), expected.get("total")
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (current, total))
        if "percent" not in patch and numeric and total > 0:
            expected["percent"] = round(min(max(current / total * 100, 0), 100), 1)
        assert repo.get(session.id).progress == expected


def test_numbers_and_text_keep_their_exact_values_through_a_merge_in_the_database(repo):
    session = repo.create(kind="analysis", owner="ana")
    repo.start(session.id)
    odd = {"big": 2**70 + 1, "neg": -(2**64), "float": 4.59e16, "tiny": 5e-324, "zero": -0.0,
           "text": "é \u2028 \"quoted\" \\ / \t", "nested": {"deep": [1, 2.5, {"x": None}]}}
    repo.report_progress(session.id, progress={**odd, "current": 1, "total": 3})
    repo.report_progress(session.id, progress={"current": 2, "total": 3, "nested": {"more": True}})
    stored = repo.get(session.id).progress
    assert stored == {**odd, "nested": {"deep": [1, 2.5, {"x": None}], "more": True},
                      "current": 2, "total": 3, "percent": 66.7}
    assert type(stored["float"]) is float and type(stored["big"]) is int

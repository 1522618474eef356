import pydantic
import pytest

from webapp.jobs import BUILTIN_KINDS, batch
from webapp.jobs.batch import BatchParams
from webapp.runner.kinds import JobFailed


def run(ctx, **params):
    return batch.run(ctx, BatchParams.model_validate({"job_seconds": 0, **params}))


def test_counters_add_up_per_phase_and_overall(make_ctx):
    result = run(make_ctx(), phases=["a", "b"], jobs_per_phase=50, fail_rate=0.3, seed=1)
    assert result["total_jobs"] == 100
    assert result["completed_jobs"] + result["failed_jobs"] == 100
    assert [phase["name"] for phase in result["phases"]] == ["a", "b"]
    assert all(phase["completed"] + phase["failed"] == 50 for phase in result["phases"])
    assert sum(phase["failed"] for phase in result["phases"]) == result["failed_jobs"]
    assert 0 < result["failed_jobs"] < 100
    assert "stopped_in_phase" not in result


def test_without_failures_every_job_completes(make_ctx):
    ctx = make_ctx()
    result = run(ctx, seed=1)
    counts = (result["completed_jobs"], result["failed_jobs"], result["total_jobs"])
    assert counts == (30, 0, 30)
    assert [phase["name"] for phase in result["phases"]] == ["prepare", "process", "report"]
    assert ctx.messages("warning") == [] and ctx.messages("error") == []


def test_progress_carries_counters_and_the_current_phase(make_ctx):
    ctx = make_ctx()
    run(ctx, phases=["one", "two"], jobs_per_phase=2, fail_rate=0.5, seed=3)
    assert [report["current"] for report in ctx.progress_reports] == [1, 2, 3, 4]
    assert [report["phase"] for report in ctx.progress_reports] == ["one", "one", "two", "two"]
    for report in ctx.progress_reports:
        assert report["total"] == report["total_jobs"] == 4
        assert report["step"] == report["phase"]
        assert report["completed_jobs"] + report["failed_jobs"] == report["current"]


def test_each_phase_logs_its_start_and_summary_and_failed_jobs_warn(make_ctx):
    ctx = make_ctx()
    result = run(ctx, phases=["load"], jobs_per_phase=20, fail_rate=0.5, seed=2)
    failed = result["failed_jobs"]
    assert ctx.logs[0] == ("info", "phase load started", {"phase": "load"})
    assert len(ctx.messages("warning")) == failed
    summary = f"phase load finished: {20 - failed} completed, {failed} failed"
    assert ctx.messages("info")[-1] == summary


def test_failure_warnings_are_capped_per_phase(make_ctx, monkeypatch):
    monkeypatch.setattr(batch, "MAX_FAILURE_LOGS_PER_PHASE", 3)
    ctx = make_ctx()
    run(ctx, phases=["a", "b"], jobs_per_phase=10, fail_rate=0.9, seed=4)
    assert len(ctx.messages("warning")) == 6


def test_a_phase_where_every_job_fails_fails_the_run_keeping_the_counts(make_ctx):
    ctx = make_ctx()
    message = "^phase prepare failed: all 10 jobs failed$"
    with pytest.raises(JobFailed, match=message) as caught:
        run(ctx, fail_rate=1.0, seed=1)
    assert caught.value.result["failed_jobs"] == 10
    assert caught.value.result["completed_jobs"] == 0
    assert [phase["name"] for phase in caught.value.result["phases"]] == ["prepare"]
    assert ctx.messages("error") == ["phase prepare finished: 0 completed, 10 failed"]


def test_the_same_seed_fails_the_same_jobs(make_ctx):
    params = {"phases": ["a", "b", "c"], "jobs_per_phase": 40, "fail_rate": 0.4, "seed": 9}
    first, second = make_ctx(), make_ctx()
    assert run(first, **params) == run(second, **params)
    assert first.logs == second.logs
    assert run(make_ctx(), **{**params, "seed": 10}) != run(make_ctx(), **params)


def test_an_unseeded_run_records_a_seed_that_repeats_it(make_ctx):
    first = run(make_ctx(), jobs_per_phase=50, fail_rate=0.5)
    assert run(make_ctx(), jobs_per_phase=50, fail_rate=0.5, seed=first["seed"]) == first


def test_a_stop_mid_phase_returns_the_counts_so_far(make_ctx):
    ctx = make_ctx(stop_after_progress=14)
    result = run(ctx, jobs_per_phase=10, fail_rate=0.2, seed=1)
    assert result["stopped_in_phase"] == "process"
    assert result["completed_jobs"] + result["failed_jobs"] == 14
    assert result["total_jobs"] == 30
    assert [phase["name"] for phase in result["phases"]] == ["prepare", "process"]
    assert result["phases"][1]["completed"] + result["phases"][1]["failed"] == 4
    assert ctx.logs[-1][1] == "stopped in phase process"


def test_a_stop_during_a_long_job_is_noticed_before_the_job_ends(make_ctx):
    ctx = make_ctx(stop_after_checks=1)  # the check between jobs passes, the next one stops
    result = batch.run(ctx, BatchParams(jobs_per_phase=1, job_seconds=0.001, seed=1))
    assert result["stopped_in_phase"] == "prepare" and result["completed_jobs"] == 0


def test_simulated_work_checks_for_a_stop_only_while_it_sleeps(make_ctx):
    ctx = make_ctx()
    assert batch._work(ctx, 0.0) is True and ctx.stop_checks == 0
    assert batch._work(ctx, 0.01) is True and ctx.stop_checks >= 1


@pytest.mark.parametrize("params, loc", [
    ({"phases": []}, ("phases",)),
    ({"phases": [f"p{i}" for i in range(21)]}, ("phases",)),
    ({"phases": [""]}, ("phases", 0)),
    ({"phases": ["ok", "x" * 65]}, ("phases", 1)),
    ({"phases": ["a", "a"]}, ("phases",)),
    ({"phases": "abc"}, ("phases",)),
    ({"jobs_per_phase": 0}, ("jobs_per_phase",)),
    ({"jobs_per_phase": 10_001}, ("jobs_per_phase",)),
    ({"jobs_per_phase": True}, ("jobs_per_phase",)),
    ({"fail_rate": 1.5}, ("fail_rate",)),
    ({"fail_rate": -0.1}, ("fail_rate",)),
    ({"fail_rate": float("nan")}, ("fail_rate",)),
    ({"seed": -1}, ("seed",)),
    ({"job_seconds": -0.5}, ("job_seconds",)),
    ({"job_seconds": 10.5}, ("job_seconds",)),
    ({"workers": 4}, ("workers",)),
])
def test_a_bad_param_is_refused_naming_the_field(params, loc):
    with pytest.raises(pydantic.ValidationError) as caught:
        BatchParams.model_validate(params)
    assert [error["loc"] for error in caught.value.errors()] == [loc]


def test_defaults_describe_a_short_visible_demo():
    params = BatchParams()
    assert params.phases == ["prepare", "process", "report"]
    assert (params.jobs_per_phase, params.fail_rate, params.job_seconds) == (10, 0.0, 0.05)
    assert BatchParams.model_validate({"fail_rate": 1, "job_seconds": 10}).fail_rate == 1.0


def test_batch_is_a_builtin_kind():
    kind = next(kind for kind in BUILTIN_KINDS if kind.name == "batch")
    assert kind.params is BatchParams and kind.run is batch.run and kind.summary

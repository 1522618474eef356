import json
import math

import numpy as np
import pydantic
import pytest

from webapp.jobs import BUILTIN_KINDS, monte_carlo
from webapp.jobs.monte_carlo import HISTOGRAM_BINS, MonteCarloParams

CHUNK = 50_000
DISTRIBUTIONS = {
    "normal": {"distribution": "normal", "mean": 3.0, "std": 2.0},
    "uniform": {"distribution": "uniform", "low": -1.0, "high": 4.0},
    "triangular": {"distribution": "triangular", "low": 0.0, "mode": 1.0, "high": 5.0},
}


@pytest.fixture
def drawn(monkeypatch):
    """Small chunks, and a copy of every chunk the job draws (its buffer is reused)."""
    monkeypatch.setattr(monte_carlo, "CHUNK_SIZE", CHUNK)
    chunks = []
    real_draw = monte_carlo._draw

    def recording_draw(rng, params, out):
        chunk = real_draw(rng, params, out)
        chunks.append(chunk.copy())
        return chunk

    monkeypatch.setattr(monte_carlo, "_draw", recording_draw)
    return chunks


def run(ctx, **params):
    return monte_carlo.run(ctx, MonteCarloParams.model_validate(params))


def assert_matches_numpy(result, samples, bin_width):
    assert result["iterations"] == samples.size
    assert result["mean"] == pytest.approx(np.mean(samples), rel=1e-12, abs=1e-12)
    assert result["std_dev"] == pytest.approx(np.std(samples), rel=1e-10)
    assert result["min"] == samples.min()
    assert result["max"] == samples.max()
    for q in (5, 50, 95):
        assert abs(result[f"p{q}"] - np.percentile(samples, q)) <= 2 * bin_width


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_statistics_match_numpy_on_the_full_sample(name, drawn, make_ctx):
    params = MonteCarloParams(iterations=4 * CHUNK + 1, seed=7, **DISTRIBUTIONS[name])
    result = monte_carlo.run(make_ctx(), params)
    samples = np.concatenate(drawn)
    assert [chunk.size for chunk in drawn] == [CHUNK] * 4 + [1]
    lo, hi = params.histogram_range()
    assert_matches_numpy(result, samples, (hi - lo) / HISTOGRAM_BINS)
    assert result["distribution"] == name and result["seed"] == 7


def test_samples_follow_the_requested_distribution(drawn, make_ctx):
    result = run(make_ctx(), iterations=200_000, seed=1, **DISTRIBUTIONS["normal"])
    assert result["mean"] == pytest.approx(3.0, abs=0.05)
    assert result["std_dev"] == pytest.approx(2.0, abs=0.05)
    assert result["p95"] == pytest.approx(3.0 + 1.6449 * 2.0, abs=0.05)
    uniform = run(make_ctx(), iterations=200_000, seed=1, **DISTRIBUTIONS["uniform"])
    assert -1.0 <= uniform["min"] < uniform["max"] < 4.0
    assert uniform["p50"] == pytest.approx(1.5, abs=0.05)
    triangular = run(make_ctx(), iterations=200_000, seed=1, **DISTRIBUTIONS["triangular"])
    assert triangular["mean"] == pytest.approx((0.0 + 1.0 + 5.0) / 3, abs=0.05)


def test_result_is_plain_json(make_ctx):
    result = run(make_ctx(), iterations=1000, seed=3)
    assert set(result) == {"mean", "std_dev", "min", "max", "p5", "p50", "p95",
                           "iterations", "seed", "distribution"}
    assert json.loads(json.dumps(result)) == result
    assert all(type(result[key]) is float for key in ("mean", "std_dev", "p5", "p95"))


def test_a_single_sample_has_every_statistic_equal_to_it(make_ctx):
    result = run(make_ctx(), iterations=1, seed=3, distribution="uniform")
    value = result["mean"]
    assert result["std_dev"] == 0.0
    assert result["min"] == result["max"] == result["p5"] == result["p95"] == value


def test_the_same_seed_gives_the_same_result_and_another_seed_does_not(make_ctx):
    first = run(make_ctx(), iterations=10_000, seed=42)
    assert run(make_ctx(), iterations=10_000, seed=42) == first
    assert run(make_ctx(), iterations=10_000, seed=43)["mean"] != first["mean"]


def test_an_unseeded_run_records_a_seed_that_repeats_it(make_ctx):
    first = run(make_ctx(), iterations=10_000)
    assert isinstance(first["seed"], int) and 0 <= first["seed"] < 2**53
    assert run(make_ctx(), iterations=10_000, seed=first["seed"]) == first


def test_progress_is_reported_after_every_chunk(drawn, make_ctx):
    ctx = make_ctx()
    run(ctx, iterations=2 * CHUNK + 10, seed=1)
    assert ctx.progress_reports == [
        {"current": done, "total": 2 * CHUNK + 10, "step": "sampling"}
        for done in (CHUNK, 2 * CHUNK, 2 * CHUNK + 10)]


def test_start_and_end_are_logged(make_ctx):
    ctx = make_ctx()
    run(ctx, iterations=100, seed=1, distribution="uniform")
    start, end = ctx.logs
    assert start[0] == "info" and start[2]["distribution"] == "uniform"
    assert start[2]["iterations"] == 100 and start[2]["seed"] == 1
    assert end[0] == "info" and "finished after 100 of 100" in end[1]


def test_a_stop_after_k_chunks_returns_the_statistics_of_those_chunks(drawn, make_ctx):
    ctx = make_ctx(stop_after_checks=2)
    result = run(ctx, iterations=10 * CHUNK, seed=5)
    assert len(drawn) == 2 and len(ctx.progress_reports) == 2
    assert_matches_numpy(result, np.concatenate(drawn), 16 * 1.0 / HISTOGRAM_BINS)
    assert result["iterations"] == 2 * CHUNK
    assert "stopped after 100000 of 500000" in ctx.logs[-1][1]


def test_a_stop_before_any_sample_returns_empty_statistics(drawn, make_ctx):
    result = run(make_ctx(stop_after_checks=0), iterations=10 * CHUNK, seed=5)
    assert drawn == []
    assert result["iterations"] == 0
    assert all(result[key] is None for key in ("mean", "std_dev", "min", "max", "p50"))


def test_ints_are_accepted_where_floats_are_expected():
    params = MonteCarloParams.model_validate({"iterations": 5, "mean": 3, "std": 2})
    assert params.mean == 3.0 and type(params.std) is float


@pytest.mark.parametrize("params", [
    {"iterations": 10**9},
    {"iterations": 1, "seed": 0},
    {"iterations": 1, "distribution": "triangular", "low": 1, "mode": 1, "high": 2},
    {"iterations": 1, "distribution": "triangular", "low": 1, "mode": 2, "high": 2},
    {"iterations": 1, "distribution": "uniform", "low": -3.5},
])
def test_boundary_values_are_accepted(params):
    MonteCarloParams.model_validate(params)


@pytest.mark.parametrize("params, field", [
    ({}, "iterations"),
    ({"iterations": 0}, "iterations"),
    ({"iterations": 10**9 + 1}, "iterations"),
    ({"iterations": True}, "iterations"),
    ({"iterations": 10.0}, "iterations"),
    ({"iterations": "10"}, "iterations"),
    ({"iterations": 1, "seed": -1}, "seed"),
    ({"iterations": 1, "seed": False}, "seed"),
    ({"iterations": 1, "distribution": "poisson"}, "distribution"),
    ({"iterations": 1, "std": 0}, "std"),
    ({"iterations": 1, "std": -1.0}, "std"),
    ({"iterations": 1, "mean": math.nan}, "mean"),
    ({"iterations": 1, "mean": math.inf}, "mean"),
    ({"iterations": 1, "mean": True}, "mean"),
    ({"iterations": 1, "mean": 1e300}, "mean"),
    ({"iterations": 1, "low": 0.0}, "low"),
    ({"iterations": 1, "distribution": "uniform", "std": 1.0}, "std"),
    ({"iterations": 1, "distribution": "uniform", "mode": 0.5}, "mode"),
    ({"iterations": 1, "distribution": "triangular", "mean": 0.0}, "mean"),
    ({"iterations": 1, "distribution": "uniform", "low": 2, "high": 1}, "high"),
    ({"iterations": 1, "distribution": "uniform", "low": 1, "high": 1}, "high"),
    ({"iterations": 1, "distribution": "uniform", "low": 5}, "low"),
    ({"iterations": 1, "distribution": "triangular", "low": 0, "mode": 2, "high": 1}, "mode"),
    ({"iterations": 1, "distribution": "triangular", "mode": -0.1}, "mode"),
    ({"iterations": 1, "samples": 5}, "samples"),
])
def test_a_bad_param_is_refused_naming_the_field(params, field):
    with pytest.raises(pydantic.ValidationError) as caught:
        MonteCarloParams.model_validate(params)
    errors = caught.value.errors()
    assert [error["loc"] for error in errors] == [(field,)]
    if field in ("low", "high", "mode"):
        assert field in errors[0]["msg"]


def test_monte_carlo_is_a_builtin_kind():
    kind = next(kind for kind in BUILTIN_KINDS if kind.name == "monte_carlo")
    assert kind.params is MonteCarloParams and kind.run is monte_carlo.run and kind.summary

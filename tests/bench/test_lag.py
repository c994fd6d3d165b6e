"""The real-person protocol on LAG: null edits gain nothing beyond the margin, no change gains exactly 0."""

from __future__ import annotations

import pytest

from faceage.bench.lag import format_lag, lag_people, run_lag
from faceage.bench.null_edits import GaussianBlur, JpegReencode, Unchanged
from faceage.errors import DatasetError

PEOPLE = 6


@pytest.fixture(scope="module")
def lag(shared_datasets):
    return shared_datasets / "lag"


@pytest.fixture(scope="module")
def judges():
    from faceage.eval.age_estimator import AgeEstimator
    from faceage.eval.identity import IdentityVerifier
    from faceage.faces.pipeline import FacePipeline

    return {"estimator": AgeEstimator(), "verifier": IdentityVerifier("sface"), "pipeline": FacePipeline(size=128)}


def test_people_are_sorted_and_limited(lag, tmp_path):
    people = lag_people(lag, 3)
    assert len(people) == 3 and [p[0] for p in people] == sorted(p[0] for p in people)
    assert all(y.parent.name == "young" and o.parent.name == "old" for _, y, o in people)
    with pytest.raises(DatasetError, match="no images/ folder"):
        lag_people(tmp_path)


@pytest.mark.slow  # seconds of subprocesses or real models: `make test` runs it, `make test-fast` does not
def test_no_change_gains_exactly_nothing(lag, judges):
    result = run_lag(Unchanged(128), lag, PEOPLE, log=lambda _: None, **judges)
    assert result["aligned"] + result["skipped"] == PEOPLE and result["aligned"] >= PEOPLE - 1
    for key in ("young_to_old", "old_to_young"):
        d = result[key]
        assert d["gain_mean"] == 0 and d["share_closer"] == 0
        assert d["similarity_edited"] == d["similarity_unedited"]
        assert d["age_error_edited"] == pytest.approx(d["age_error_unedited"], abs=1e-5)
        assert all(share <= 5 for share in d["null_share_closer"].values()) and d["margin"] >= 0
    lines = format_lag(result)
    assert any(line.startswith("| young -> old |") for line in lines)


@pytest.mark.slow  # seconds of subprocesses or real models: `make test` runs it, `make test-fast` does not
@pytest.mark.parametrize("null", [JpegReencode(128, 90), GaussianBlur(128, 1.0)], ids=["jpeg", "blur"])
def test_null_edits_score_no_gain_beyond_the_margin(lag, judges, null):
    result = run_lag(null, lag, PEOPLE, log=lambda _: None, **judges)
    for key in ("young_to_old", "old_to_young"):
        assert result[key]["share_closer"] <= 5.0

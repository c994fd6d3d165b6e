"""`faceage age --to`: any text either gives plain ages or one usage error, nothing else."""

from __future__ import annotations

import click
from hypothesis import example, given
from hypothesis import strategies as st

from faceage.age_groups import plain_age
from faceage.methods.commands import parse_ages
from faceage.outputs.results import age_label

NUMBERISH = st.text(alphabet="0123456789.,-+eE _infINFnaN\t", max_size=24)


def check_ages(ages: tuple[float, ...]) -> None:
    assert ages and all(isinstance(a, float) and 0.0 <= a <= 120.0 for a in ages)
    labels = [age_label(a) for a in ages]
    assert len(set(labels)) == len(labels)  # one output name per age
    for age, label in zip(ages, labels):
        assert age == plain_age(age) and float(label) == age
        assert "-" not in label and "e" not in label and len(label.partition(".")[2]) <= 1


@given(st.one_of(NUMBERISH, st.text(max_size=24)))
@example("-0")
@example("1e-320")
@example("0,-0")
@example("nan")
@example("1_0")
@example(",")
def test_any_text_gives_plain_ages_or_one_usage_error(text):
    try:
        ages = parse_ages(None, None, text)  # type: ignore[arg-type]
    except click.BadParameter as error:
        assert "\n" not in str(error.message)
        return
    assert ages is not None
    check_ages(ages)


@given(
    st.lists(st.floats(0.0, 120.0), min_size=1, max_size=8, unique_by=plain_age),
    st.sampled_from(["{!r}", "{:g}", "{:.3f}", " {} ", "{:e}", "+{}"]),
)
def test_listed_ages_come_back_in_order_to_one_decimal(ages, form):
    text = ",".join(form.format(a) for a in ages)
    expected = tuple(plain_age(float(form.format(a))) for a in ages)
    if len(set(expected)) < len(expected):  # the format itself rounded two ages together
        return
    assert parse_ages(None, None, text) == expected  # type: ignore[arg-type]
    check_ages(expected)

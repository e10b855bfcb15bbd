"""Time axes of the charts (issue 19): labels never repeat, whatever the span, and say their unit."""

import re

import pytest

from memtop.tui.widgets import ago_ticks, clock_ticks

OFFSET = 1_790_000_000.0  # wall clock - monotonic


@pytest.mark.parametrize("span", [0.2, 1, 2, 2.5, 3, 4, 7, 10, 13, 30, 59, 60, 61, 118, 300, 1000, 3600, 86400])
def test_clock_axis_labels_are_distinct_round_and_clock_times(span):
    first = 1000.3
    ticks, labels = clock_ticks(first, first + span, OFFSET)
    assert len(labels) == len(set(labels)), labels  # "13:46:59 13:46:59" never again
    assert 1 <= len(labels) <= 6
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", label) for label in labels)
    assert ticks == sorted(ticks) and all(first - 1 <= t <= first + span for t in ticks)
    if len(ticks) > 1:  # on round seconds, evenly spaced
        assert all(float(t + OFFSET).is_integer() for t in ticks)
        assert len({round(b - a, 6) for a, b in zip(ticks, ticks[1:])}) == 1


@pytest.mark.parametrize("span", [1, 2.5, 10, 45, 60, 118, 300, 599, 3600])
def test_ago_axis_labels_are_distinct_and_carry_their_unit(span):
    ticks, labels = ago_ticks(span, 3)
    assert len(labels) == len(set(labels)) and labels[-1] == "now" and ticks[-1] == 0
    assert all(re.fullmatch(r"-(\d+h|\d+m(\d\ds)?|\d+s)", label) for label in labels[:-1]), labels
    assert all(-span - 1e-6 <= t <= 0 for t in ticks)
    assert ago_ticks(118, 4)[1] == ["-1m30s", "-1m", "-30s", "now"]

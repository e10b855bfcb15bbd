"""The Processes table's order and totals kept from tick to tick (SortedViews) are the ones a
fresh sort and sum give, over any sequence of ticks: views replaced (a process changed), come and
gone, another column or order. The views are built from the samples of a captured /proc tree
(tests/fixtures/proc-basic), with their figures varied."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from memtop.collect.sampler import Sampler
from memtop.model.process import ProcessIdentity, new_view
from memtop.tui.columns import COLUMNS_BY_KEY
from memtop.tui.processes import SortedViews

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "proc-basic"
BASE = [v.sample for v in Sampler(FIX).sample().processes]
WITH_ROLLUP = next(s for s in BASE if s.rollup is not None)
MiB = 1 << 20


def view(pid: int, rss: int | None, pss: int | None, swap: int | None):
    rollup = replace(WITH_ROLLUP.rollup, pss=pss, private_clean=pss, private_dirty=0) if pss is not None else None
    sample = replace(WITH_ROLLUP, identity=ProcessIdentity(pid, 1000 + pid), rss_bytes=rss, rollup=rollup,
                     swap_bytes=swap, comm=f"p{pid % 7}", cmdline=f"/bin/p{pid % 7} --n {pid}")
    return new_view(sample, 0.0, 0.0, 0.0, 0, (), True)


def naive_order(views, column, reverse):
    value = COLUMNS_BY_KEY[column].value
    known = [v for v in views if value(v) is not None]
    known.sort(key=lambda v: (value(v), -v.pid if reverse else v.pid), reverse=reverse)
    return known + sorted((v for v in views if value(v) is None), key=lambda v: v.pid)


def naive_totals(views):
    def col(get):
        xs = [x for x in map(get, views) if x is not None]
        return sum(xs), len(xs)
    cols = [col(lambda v: v.sample.rss_bytes), col(lambda v: v.sample.rollup and v.sample.rollup.pss),
            col(lambda v: v.sample.rollup and v.sample.rollup.uss), col(lambda v: v.sample.swap_bytes)]
    return tuple(c[0] for c in cols) + tuple(c[1] for c in cols)


figures = st.tuples(st.one_of(st.none(), st.integers(0, 50).map(lambda n: n * MiB)),
                    st.one_of(st.none(), st.integers(0, 50).map(lambda n: n * MiB)),
                    st.one_of(st.none(), st.integers(0, 3).map(lambda n: n * MiB)))
tick = st.tuples(
    st.dictionaries(st.integers(0, 59), figures, max_size=12),  # index -> new figures (same process)
    st.sets(st.integers(0, 59), max_size=3),  # indexes of processes gone
    st.integers(0, 2),  # processes new
    st.sampled_from(["rss", "pss", "uss", "pid", "user", "command", "swap"]),
    st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(start=st.lists(figures, min_size=0, max_size=60), ticks=st.lists(tick, max_size=12), column=st.sampled_from(["rss", "pss"]))
def test_kept_order_and_totals_are_a_fresh_sort_and_sum(start, ticks, column):
    views = [view(300 + i, *f) for i, f in enumerate(start)]
    next_pid = 1000
    kept = SortedViews()
    reverse = True
    for changes, gone, new, other_column, other_reverse in [({}, set(), 0, column, True), *ticks]:
        views = [view(v.pid, *changes[i]) if i in changes else v for i, v in enumerate(views) if i not in gone]
        for _ in range(new):
            views.append(view(next_pid, 5 * MiB, None, None))
            next_pid += 1
        if other_column != column or other_reverse != reverse:
            if len(changes) % 2:  # now and then: another column or order
                column, reverse = other_column, other_reverse
        col = COLUMNS_BY_KEY[column]
        rows = kept.sort(tuple(views), col, reverse)
        assert [v.pid for v in rows] == [v.pid for v in naive_order(views, column, reverse)]
        assert [v.pid for v in rows] == [v.pid for v in SortedViews().sort(views, col, reverse)]
        assert kept.totals == naive_totals(views)


def test_a_few_changed_views_move_in_place_not_by_a_new_sort():
    views = tuple(view(300 + i, (i * 7 % 23) * MiB, (i * 5 % 19) * MiB, None) for i in range(200))
    kept = SortedViews()
    kept.sort(views, COLUMNS_BY_KEY["pss"], True)
    known = kept._known
    changed = list(views)
    changed[10] = view(310, 99 * MiB, 99 * MiB, MiB)  # to the top
    changed[20] = view(320, 1 * MiB, None, None)  # PSS unknown: to the bottom
    rows = kept.sort(tuple(changed), COLUMNS_BY_KEY["pss"], True)
    assert kept._known is known  # taken out and put back, not sorted anew
    assert rows[0].pid == 310 and rows[-1].pid == 320
    assert [v.pid for v in rows] == [v.pid for v in naive_order(changed, "pss", True)]
    assert kept.totals == naive_totals(changed)
    # A process gone: sorted anew.
    rows = kept.sort(tuple(changed[1:]), COLUMNS_BY_KEY["pss"], True)
    assert kept._known is not known and 300 not in {v.pid for v in rows}

"""The PSI charts draw a picture only when it changes (issue 20 item 2): readings go into the
chart's columns, aligned to the clock, at its vertical resolution."""

from textual.app import App

from memtop.model.pressure import PressureSample
from memtop.procfs.pressure import parse_pressure_file
from memtop.tui.pressure import PsiChart, chart_columns

# /proc/pressure/memory as read on this machine; ``total`` (µs of stall) is what the charts use.
MEMORY = "some avg10=0.00 avg60=0.00 avg300=0.00 total={some}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total={full}\n"


def readings(start: float, count: int, step_s: float = 2.0, stall_at: dict[int, int] | None = None):
    """``count`` readings ``step_s`` apart; ``stall_at`` adds µs of stall (some and full) before reading i."""
    samples, some = [], 229_730_175
    for i in range(count):
        some += (stall_at or {}).get(i, 0)
        text = MEMORY.format(some=some, full=some - 36_361_499)
        samples.append(PressureSample(start + i * step_s, {"memory": parse_pressure_file(text)}))
    return tuple(samples)


def test_columns_hold_the_largest_reading_and_do_not_move_with_the_clock():
    series = [(100.0, 0.0, 0.0), (102.0, 5.0, 1.0), (104.0, 0.0, None), (106.0, 0.0, 0.0)]
    points, width = chart_columns(series, window_s=40.0, columns=10)  # 4 s columns
    assert width == 4.0
    # 100-104 s: column 25, 104-108: column 26 (the newest, x = 0)
    assert points == ((-1, 5.0, 1.0), (0, 0.0, 0.0))
    # readings older than the window are not drawn
    assert chart_columns([(0.0, 9.0, 9.0), (100.0, 1.0, None)], 40.0, 10)[0] == ((0, 1.0, None),)


class ChartApp(App):
    interval = 2.0

    def compose(self):
        yield PsiChart("memory", id="chart")


async def test_an_idle_tick_draws_nothing_and_a_stall_draws_once():
    app = ChartApp()
    async with app.run_test(size=(60, 12)) as pilot:
        chart = app.query_one(PsiChart)
        start = 1_000_000.0
        history = readings(start, 40)  # an idle machine: no stall between readings
        chart.show(history, None)
        await pilot.pause()
        assert chart.draws == 1
        # A tick later the picture is the same (the newest column of 4.3 s gained a zero)...
        same = 0
        for i in range(40, 60):
            history = readings(start, i + 1)
            before = chart.draws
            chart.show(history, None)
            same += chart.draws == before
        # ... and the idle line spans more columns only when a reading starts a new column
        # (about one tick in two here): never a rebuild every tick.
        assert 0 < same < 20 and chart.draws <= 1 + 20 - same
        # A stall is a new picture, drawn once; the ticks after it with no new stall are not.
        history = readings(start, 61, stall_at={60: 400_000})
        before = chart.draws
        chart.show(history, None)
        assert chart.draws == before + 1
        chart.show(history, None)
        assert chart.draws == before + 1
        await pilot.pause()
        assert "memory stall ms/s" in str(chart.render())


async def test_a_full_history_of_an_idle_machine_is_never_drawn_again():
    from memtop.collect.parts import PSI_HISTORY

    app = ChartApp()
    async with app.run_test(size=(60, 12)) as pilot:
        chart = app.query_one(PsiChart)
        everything = readings(1_000_000.0, PSI_HISTORY + 40)
        chart.show(everything[:PSI_HISTORY], None)  # the history as the part keeps it: the newest 300
        drawn = chart.draws
        for end in range(PSI_HISTORY + 1, PSI_HISTORY + 40):
            chart.show(everything[end - PSI_HISTORY:end], None)
        assert drawn == 1 and chart.draws == 1
        await pilot.pause()

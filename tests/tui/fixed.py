"""A MemtopApp fed with snapshots of the captured proc tree and a fake clock: deterministic."""

import time
from pathlib import Path

from memtop.collect.sampler import Sampler
from memtop.tui.app import MemtopApp

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "proc-basic"


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def fixed_app(root: Path = FIX, **kw) -> MemtopApp:
    clock = FakeClock()
    sampler = Sampler(root, clock=clock, wall_clock=lambda: 1_790_000_000.0)
    app = MemtopApp(root=root, sample=False, sampler=sampler, **kw)
    # Every part at every tick: on a loaded machine a part's real CPU cost spaced its runs out
    # (PART_DUTY) and a tab showed an older tick than the test fed (seen under load).
    app.collector.part_duty = 0.0
    app.fake_clock = clock
    return app


async def feed(app: MemtopApp, pilot, ticks: int = 1, step_s: float = 2.0) -> None:
    """Tick the app's Collector ``ticks`` times on the captured tree, as the sampler thread would
    (with ``sample=False`` the parts run in this thread: deterministic)."""
    for _ in range(ticks):
        app.tick()
        app.fake_clock.now += step_s
        await pilot.pause()


async def show_tab(pilot, tab_id: str, timeout: float = 10.0):
    """Switch to the tab ``tab_id`` (as its digit key does) and return it once it is built and
    active: tabs other than Processes are built when first shown. An activation made while the
    app is still mounting can be lost, so it is asked again until it holds."""
    from memtop.tui.app import TABS

    index = [spec.id for spec in TABS].index(tab_id)
    deadline = time.monotonic() + timeout
    while True:
        view = pilot.app.active_tab()
        if view is not None and view.TAB_ID == tab_id and view.is_mounted:
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"the {tab_id} tab was not shown in {timeout:g} s")
        pilot.app.action_tab(index)
        await pilot.pause(0.05)

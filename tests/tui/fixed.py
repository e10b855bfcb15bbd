"""A MemtopApp fed with snapshots of the captured proc tree and a fake clock: deterministic."""

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
    app.fake_clock = clock
    return app


async def feed(app: MemtopApp, pilot, ticks: int = 1, step_s: float = 2.0) -> None:
    """Tick the app's Collector ``ticks`` times on the captured tree, as the sampler thread would
    (with ``sample=False`` the parts run in this thread: deterministic)."""
    for _ in range(ticks):
        app.tick()
        app.fake_clock.now += step_s
        await pilot.pause()

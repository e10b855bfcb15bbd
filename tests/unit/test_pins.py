"""A pinned UI stack (issue 18, item 5): textual is pinned exactly in pyproject.toml, every Python
package of a test run is pinned in constraints.txt (scripts/setup.sh installs with it), and the
replacement input driver (memtop/tui/driver.py) is enabled for exactly the pinned Textual. These
fail, never skip, when pin, lock, driver and the installed packages disagree."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import textual

from memtop.tui import driver

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def name_of(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[name_of(name)] = version
    return pins


def textual_pin() -> str:
    pins = [r for r in PYPROJECT["project"]["dependencies"] if name_of(r) == "textual"]
    assert len(pins) == 1 and re.fullmatch(r"textual==\d+\.\d+\.\d+", pins[0].replace(" ", "")), pins
    return pins[0].split("==")[1].strip()


def test_textual_is_pinned_exactly_and_locked_the_same():
    assert constraints()["textual"] == textual_pin()


def test_the_input_driver_is_enabled_for_exactly_the_pinned_textual(monkeypatch):
    pin = textual_pin()
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in driver.KNOWN_TEXTUAL), driver.KNOWN_TEXTUAL
    assert pin in driver.KNOWN_TEXTUAL, f"pyproject pins textual {pin}; the driver knows {driver.KNOWN_TEXTUAL}"
    assert textual.__version__ == pin, f"the installed textual {textual.__version__} is not the pinned {pin}"
    monkeypatch.setattr(driver.constants, "DRIVER", None)  # no TEXTUAL_DRIVER chosen
    assert driver.driver_class() is not None
    # and any other version gets Textual's own driver
    monkeypatch.setattr(driver, "textual_version", lambda: pin + ".1")
    assert driver.driver_class() is None


def test_textual_version_is_read_from_the_dist_info_directory_as_importlib_metadata_says(tmp_path):
    """driver.textual_version reads the directory name, not importlib.metadata (38 ms, 1.8 MiB
    kept); it must give the same answer, and ask importlib.metadata where the name is not
    there or not alone."""
    from importlib.metadata import version

    assert driver.textual_version() == version("textual") == textual_pin()
    (tmp_path / "textual-9.9.9.dist-info").mkdir()
    assert driver.textual_version(tmp_path) == "9.9.9"
    (tmp_path / "textual-9.9.10.dist-info").mkdir()  # two installs: the name does not tell
    assert driver.textual_version(tmp_path) == textual.__version__
    assert driver.textual_version(tmp_path / "missing") == textual.__version__


def test_every_dependency_is_locked_and_installed_at_its_locked_version():
    pins = constraints()
    wanted = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"]["test"]]
    missing = [r for r in wanted if name_of(r) not in pins]
    assert not missing, f"not in constraints.txt: {missing}"
    wrong = {}
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"locked vs installed (run make setup): {wrong}"


def test_no_dependency_that_nothing_imports():
    names = {name_of(r) for r in PYPROJECT["project"]["dependencies"]}
    assert "plotext" not in names  # plotext comes with textual-plotext, which memtop imports
    sources = "\n".join(p.read_text() for p in (ROOT / "memtop").rglob("*.py"))
    modules = {"textual": "textual", "pygdbmi": "pygdbmi", "textual-plotext": "textual_plotext",
               "prometheus-client": "prometheus_client", "psutil": "psutil"}
    assert names == set(modules), names
    for name, module in modules.items():
        assert re.search(rf"^\s*(from|import) {module}\b", sources, re.M), f"{name} is listed but not imported"

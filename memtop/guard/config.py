"""The guard's configuration: command-line flags, an optional TOML file, and the allow/deny rules.

The file (``--config FILE``) has the same settings as the flags; a flag given on the command line
wins over the file, and list settings (allow, deny, evict paths) add up. memtop runs as root, so
the file is opened with O_NOFOLLOW (never through a symbolic link) and O_NONBLOCK (a FIFO planted
there cannot hang it), and what was opened is checked by fstat: a regular file, owned by root or
by the user running memtop, writable by nobody else (not group, not others), at most 1 MiB.
An unknown key is an error, never ignored: a typo in ``[deny]`` must not silently allow.

Example::

    dry_run = false                 # act; the default is a dry run that only logs its choices
    trigger = "some 100000 1000000" # PSI trigger: 100 ms of memory stall per 1 s window
    pressure_cgroup = "/workload"   # a cgroup v2 memory.pressure instead of the system's
    min_release = "32M"             # do not stop a process for less than this
    cooldown = "5m"                 # never the same process twice within this
    max_stops_per_minute = 4        # processes stopped by trims, all together
    walk_budget = 5                 # CPU seconds of heap walks per minute
    cache_age = 120                 # a heap walk's prediction is kept this long (seconds)
    timeout = 5                     # a trim's lock wait and call timeout (seconds)
    idle_walks = true               # keep the ranking warm while there is no pressure

    [allow]                         # when a list is set, a process must match it
    cgroups = ["/workload/*"]
    [deny]                          # a match here excludes, whatever allow says
    names = ["postgres", "java"]
    users = ["root"]
    [evict]                         # after trims: drop these files' page cache
    paths = ["/var/log/*.log", "/backup/**/*.tar"]
    interval = 60                   # at most one evict pass per this many seconds
    [metrics]
    listen = "127.0.0.1:9106"       # serve /metrics
    file = "/var/lib/prometheus/node-exporter/memtop_guard.prom"  # or write a textfile
"""

from __future__ import annotations

import errno
import fnmatch
import math
import os
import pwd
import re
import stat as stat_mod
from dataclasses import dataclass, field

from memtop.model.pressure import TriggerSpec

from memtop.guard.defaults import (  # noqa: F401 (the settings' defaults, read here and by the flags' help)
    DEFAULT_CACHE_AGE_S,
    DEFAULT_COOLDOWN_S,
    DEFAULT_EVICT_INTERVAL_S,
    DEFAULT_MAX_STOPS_PER_MINUTE,
    DEFAULT_MIN_RELEASE,
    DEFAULT_TIMEOUT_S,
    DEFAULT_TRIGGER,
    DEFAULT_WALK_BUDGET_S,
)
MAX_CONFIG_BYTES = 1 << 20

_SIZE_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
               "g": 2**30, "gb": 2**30, "gib": 2**30}
_DURATION_UNITS = {"": 1, "s": 1, "ms": 0.001, "m": 60, "min": 60, "h": 3600}


class ConfigError(ValueError):
    """A setting is invalid (a usage error, exit 2); the message says which and why, in one line."""


class UnsafeConfig(OSError):
    """The config file cannot be trusted or read (exit 1); the message says why, in one line."""

    def __init__(self, message: str):
        super().__init__(errno.EPERM, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def parse_size(value, what: str = "size") -> int:
    """Bytes from ``123``, ``"64M"``, ``"1.5G"`` (powers of 1024)."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: not a size: {value!r}")
    if isinstance(value, int):
        number, unit = float(value), ""
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if not m or m.group(2).lower() not in _SIZE_UNITS:
            raise ConfigError(f"{what}: not a size: {value!r} (e.g. 32M, 1G, 500K)")
        number, unit = float(m.group(1)), m.group(2).lower()
    else:
        raise ConfigError(f"{what}: not a size: {value!r}")
    size = int(number * _SIZE_UNITS[unit])
    if size < 0:
        raise ConfigError(f"{what}: must not be negative: {value!r}")
    return size


def parse_seconds(value, what: str = "duration", *, minimum: float = 0.0, maximum: float = 86400.0) -> float:
    """Seconds from ``30``, ``2.5``, ``"90s"``, ``"5m"``, ``"1h"``, within [minimum, maximum]."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: not a duration: {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if not m or m.group(2).lower() not in _DURATION_UNITS:
            raise ConfigError(f"{what}: not a duration: {value!r} (e.g. 30, 90s, 5m)")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
    else:
        raise ConfigError(f"{what}: not a duration: {value!r}")
    if not math.isfinite(seconds) or not minimum <= seconds <= maximum:
        raise ConfigError(f"{what}: must be between {minimum:g} and {maximum:g} seconds, not {value!r}")
    return seconds


def parse_count(value, what: str, *, minimum: int = 1, maximum: int = 10_000) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{what}: not a whole number: {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{what}: not a whole number: {value!r}") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{what}: must be between {minimum} and {maximum}, not {value!r}")
    return number


def parse_trigger(text) -> TriggerSpec:
    from memtop.procfs.pressure import parse_trigger_spec

    if not isinstance(text, str):
        raise ConfigError(f"trigger: not a string: {text!r}")
    try:
        return parse_trigger_spec(text)
    except ValueError as e:
        raise ConfigError(f"trigger: {e}") from None


def parse_listen(text) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (loopback)."""
    if not isinstance(text, str):
        raise ConfigError(f"metrics listen: not a string: {text!r}")
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ConfigError(f"metrics listen: expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"metrics listen: not a port: {port!r}") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"metrics listen: port out of range: {number}")
    return host, number


def _string_list(value, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{what}: expected a list of non-empty strings, got {value!r}")
    if len(value) > 1000:
        raise ConfigError(f"{what}: at most 1000 entries")
    return tuple(value)


def resolve_user(text: str) -> int:
    """A user name or a numeric uid -> uid; ConfigError for an unknown name."""
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise ConfigError(f"unknown user {text!r}") from None


# --- rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessFacts:
    """What the rules look at: the name (comm), the real uid, the cgroup paths (memory controller's
    and cgroup v2's, as /proc/PID/cgroup writes them)."""

    pid: int
    comm: str
    uid: int | None
    cgroups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rules:
    """Allow and deny lists. A process is excluded when it matches any deny entry; when an allow
    list of a kind (names, cgroups, users) is set, it must match that list too (every set kind)."""

    allow_names: tuple[str, ...] = ()
    deny_names: tuple[str, ...] = ()
    allow_cgroups: tuple[str, ...] = ()
    deny_cgroups: tuple[str, ...] = ()
    allow_uids: tuple[int, ...] = ()
    deny_uids: tuple[int, ...] = ()

    def exclusion(self, facts: ProcessFacts) -> str | None:
        """Why the rules exclude this process, or None when they let it be acted on."""
        for glob in self.deny_names:
            if fnmatch.fnmatchcase(facts.comm, glob):
                return f"name matches deny {glob!r}"
        for glob in self.deny_cgroups:
            for path in facts.cgroups:
                if fnmatch.fnmatchcase(path, glob):
                    return f"cgroup {path} matches deny {glob!r}"
        if facts.uid is not None and facts.uid in self.deny_uids:
            return f"uid {facts.uid} is denied"
        if self.allow_names and not any(fnmatch.fnmatchcase(facts.comm, g) for g in self.allow_names):
            return "name matches no allow entry"
        if self.allow_cgroups and not any(fnmatch.fnmatchcase(p, g) for g in self.allow_cgroups for p in facts.cgroups):
            return "cgroup matches no allow entry" if facts.cgroups else "cgroup unknown, and an allow list is set"
        if self.allow_uids and (facts.uid is None or facts.uid not in self.allow_uids):
            return "user matches no allow entry"
        return None

    def describe(self) -> dict:
        return {"allow": {"names": list(self.allow_names), "cgroups": list(self.allow_cgroups),
                          "uids": list(self.allow_uids)},
                "deny": {"names": list(self.deny_names), "cgroups": list(self.deny_cgroups),
                         "uids": list(self.deny_uids)}}


@dataclass(frozen=True, slots=True)
class GuardConfig:
    dry_run: bool = True
    trigger: TriggerSpec = field(default_factory=lambda: parse_trigger(DEFAULT_TRIGGER))
    pressure_cgroup: str | None = None  # a cgroup v2 path; None: the system's /proc/pressure/memory
    min_release_bytes: int = DEFAULT_MIN_RELEASE
    cooldown_s: float = DEFAULT_COOLDOWN_S
    max_stops_per_minute: int = DEFAULT_MAX_STOPS_PER_MINUTE
    walk_budget_s: float = DEFAULT_WALK_BUDGET_S  # CPU seconds of heap walks per minute
    cache_age_s: float = DEFAULT_CACHE_AGE_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    idle_walks: bool = True
    rules: Rules = field(default_factory=Rules)
    evict_globs: tuple[str, ...] = ()
    evict_interval_s: float = DEFAULT_EVICT_INTERVAL_S
    metrics_listen: tuple[str, int] | None = None
    metrics_file: str | None = None
    config_file: str | None = None

    def describe(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "trigger": self.trigger.text(),
            "pressure_cgroup": self.pressure_cgroup,
            "min_release_bytes": self.min_release_bytes,
            "cooldown_s": self.cooldown_s,
            "max_stops_per_minute": self.max_stops_per_minute,
            "walk_budget_s_per_minute": self.walk_budget_s,
            "cache_age_s": self.cache_age_s,
            "timeout_s": self.timeout_s,
            "idle_walks": self.idle_walks,
            "rules": self.rules.describe(),
            "evict": {"paths": list(self.evict_globs), "interval_s": self.evict_interval_s},
            "metrics": {"listen": None if self.metrics_listen is None else f"{self.metrics_listen[0]}:{self.metrics_listen[1]}",
                        "file": self.metrics_file},
            "config_file": self.config_file,
        }


# --- the file --------------------------------------------------------------------------------------


def _shown(path) -> str:
    from memtop.text import printable

    return printable(os.fspath(path))


def read_config_file(path: str) -> dict:
    """The TOML table of ``path`` after the checks of the module doc; UnsafeConfig or ConfigError."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise UnsafeConfig("a config file needs Python 3.11 or later (tomllib); use the flags instead") from None
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeConfig(f"the config file {_shown(path)} is a symbolic link: name the file itself") from None
        raise UnsafeConfig(f"cannot open the config file {_shown(path)}: {os.strerror(e.errno or 0)}") from None
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise UnsafeConfig(f"the config file {_shown(path)} is not a regular file")
        euid = os.geteuid()
        if st.st_uid not in (0, euid):
            raise UnsafeConfig(f"the config file {_shown(path)} is owned by uid {st.st_uid}, not by root or you "
                               f"(uid {euid}): another user could change what the guard does")
        if st.st_mode & 0o022:
            raise UnsafeConfig(f"the config file {_shown(path)} is writable by group or others "
                               f"(mode {stat_mod.S_IMODE(st.st_mode):04o}): another user could change what the guard does")
        if st.st_size > MAX_CONFIG_BYTES:
            raise UnsafeConfig(f"the config file {_shown(path)} is larger than {MAX_CONFIG_BYTES >> 20} MiB")
        data = b""
        while len(data) <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{_shown(path)}: not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{_shown(path)}: {e}") from None


_TOP_KEYS = {"dry_run", "trigger", "pressure_cgroup", "min_release", "cooldown", "max_stops_per_minute",
             "walk_budget", "cache_age", "timeout", "idle_walks", "allow", "deny", "evict", "metrics"}
_RULE_KEYS = {"names", "cgroups", "users"}
_EVICT_KEYS = {"paths", "interval"}
_METRICS_KEYS = {"listen", "file"}


def _check_keys(table, allowed: set[str], where: str) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    return table


def _cgroup_globs(values: tuple[str, ...], what: str) -> tuple[str, ...]:
    for value in values:
        if not value.startswith("/"):
            raise ConfigError(f"{what}: a cgroup path starts with '/', as in /proc/PID/cgroup: {value!r}")
    return values


def build_config(file_values: dict | None = None, *, config_file: str | None = None, **flags) -> GuardConfig:
    """The configuration from the file's table and the flags (None: not given). Flags win over the
    file; allow, deny and evict lists add up."""
    table = _check_keys(file_values or {}, _TOP_KEYS, config_file or "config")
    where = config_file or "config"

    def pick(flag_name: str, key: str):
        value = flags.get(flag_name)
        return value if value is not None else table.get(key)

    kw: dict = {"config_file": config_file}
    dry_run = flags.get("dry_run")
    if dry_run is None and "dry_run" in table:
        if not isinstance(table["dry_run"], bool):
            raise ConfigError(f"{where}: dry_run: expected true or false, got {table['dry_run']!r}")
        dry_run = table["dry_run"]
    kw["dry_run"] = True if dry_run is None else bool(dry_run)
    if (v := pick("trigger", "trigger")) is not None:
        kw["trigger"] = v if isinstance(v, TriggerSpec) else parse_trigger(v)
    if (v := pick("pressure_cgroup", "pressure_cgroup")) is not None:
        if not isinstance(v, str) or not v.startswith("/") or "/../" in v + "/" or "\0" in v:
            raise ConfigError(f"pressure cgroup: a cgroup v2 path such as /workload, got {v!r}")
        kw["pressure_cgroup"] = v
    if (v := pick("min_release", "min_release")) is not None:
        kw["min_release_bytes"] = parse_size(v, "min release")
    if (v := pick("cooldown", "cooldown")) is not None:
        kw["cooldown_s"] = parse_seconds(v, "cooldown", maximum=7 * 86400)
    if (v := pick("max_stops_per_minute", "max_stops_per_minute")) is not None:
        kw["max_stops_per_minute"] = parse_count(v, "max stops per minute", minimum=1, maximum=60)
    if (v := pick("walk_budget", "walk_budget")) is not None:
        kw["walk_budget_s"] = parse_seconds(v, "walk budget", minimum=0.1, maximum=60)
    if (v := pick("cache_age", "cache_age")) is not None:
        kw["cache_age_s"] = parse_seconds(v, "cache age", minimum=1, maximum=86400)
    if (v := pick("timeout", "timeout")) is not None:
        kw["timeout_s"] = parse_seconds(v, "timeout", minimum=0.5, maximum=120)
    idle = flags.get("idle_walks")
    if idle is None and "idle_walks" in table:
        if not isinstance(table["idle_walks"], bool):
            raise ConfigError(f"{where}: idle_walks: expected true or false")
        idle = table["idle_walks"]
    if idle is not None:
        kw["idle_walks"] = bool(idle)

    lists: dict[str, tuple] = {}
    for side in ("allow", "deny"):
        section = _check_keys(table.get(side, {}), _RULE_KEYS, f"{where} [{side}]")
        for key in ("names", "cgroups", "users"):
            values = _string_list(section.get(key, []), f"[{side}] {key}") + tuple(flags.get(f"{side}_{key}") or ())
            lists[f"{side}_{key}"] = values
    rules = Rules(
        allow_names=lists["allow_names"], deny_names=lists["deny_names"],
        allow_cgroups=_cgroup_globs(lists["allow_cgroups"], "allow cgroup"),
        deny_cgroups=_cgroup_globs(lists["deny_cgroups"], "deny cgroup"),
        allow_uids=tuple(resolve_user(u) for u in lists["allow_users"]),
        deny_uids=tuple(resolve_user(u) for u in lists["deny_users"]),
    )
    kw["rules"] = rules

    evict = _check_keys(table.get("evict", {}), _EVICT_KEYS, f"{where} [evict]")
    globs = _string_list(evict.get("paths", []), "[evict] paths") + tuple(flags.get("evict") or ())
    for glob in globs:
        if not glob.startswith("/"):
            raise ConfigError(f"evict: paths must be absolute, got {glob!r}")
    kw["evict_globs"] = globs
    interval = flags.get("evict_interval")
    if interval is None:
        interval = evict.get("interval")
    if interval is not None:
        kw["evict_interval_s"] = parse_seconds(interval, "evict interval", minimum=1, maximum=86400)

    metrics = _check_keys(table.get("metrics", {}), _METRICS_KEYS, f"{where} [metrics]")
    listen = flags.get("metrics_listen")
    if listen is None:
        listen = metrics.get("listen")
    if listen is not None:
        kw["metrics_listen"] = listen if isinstance(listen, tuple) else parse_listen(listen)
    mfile = flags.get("metrics_file")
    if mfile is None:
        mfile = metrics.get("file")
    if mfile is not None:
        if not isinstance(mfile, str) or not mfile.startswith("/"):
            raise ConfigError(f"metrics file: an absolute path, got {mfile!r}")
        kw["metrics_file"] = mfile
    return GuardConfig(**kw)

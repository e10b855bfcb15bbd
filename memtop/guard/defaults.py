"""The guard's defaults, apart from :mod:`memtop.guard.config` so that the flags' help (built for
every command, the TUI's start included) does not import the config's parser and checks."""

DEFAULT_TRIGGER = "some 100000 1000000"
DEFAULT_MIN_RELEASE = 32 << 20
DEFAULT_COOLDOWN_S = 300.0
DEFAULT_MAX_STOPS_PER_MINUTE = 4
DEFAULT_WALK_BUDGET_S = 5.0
DEFAULT_CACHE_AGE_S = 120.0
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_EVICT_INTERVAL_S = 60.0

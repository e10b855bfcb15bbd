"""The pressure guard: reclaim what is safely reclaimable before the OOM killer, without killing.

``memtop guard`` (memtop/commands/guard.py) is a foreground daemon. A PSI trigger (system
``/proc/pressure/memory`` or a cgroup v2 ``memory.pressure``) wakes it; while pressure lasts it
trims the processes whose glibc heaps hold the most free-but-kept memory (ranked by memtop's
read-only heap walk, cached per process identity, walked within a CPU budget), then evicts the
page cache of files the operator named; it stops when pressure is gone.

It acts only through memtop's own action paths (:func:`memtop.actions.trim.predict` and
:func:`memtop.actions.trim.trim`, :func:`memtop.actions.evict.check_file` and
:func:`memtop.actions.evict.evict_checked`), so it refuses what they refuse (locks held, traced
or stopped processes, corrupt heaps, zombies, files changed since checked), and on top of them it
adds its own limits: allow/deny rules, a per-process cooldown, a global cap on stops per minute,
a minimum release worth a stop. ``--dry-run`` (the default) makes the same choices and acts on
nothing.

One package, not one module, because it has five separable parts that are tested apart:
:mod:`.config` (flags, the TOML file and its safety checks, the rules), :mod:`.policy` (cooldown,
rate limit, walk budget, the ranking cache), :mod:`.pressure` (where pressure is read and the
trigger), :mod:`.engine` (the loop that decides and acts), :mod:`.metrics` (Prometheus).
"""

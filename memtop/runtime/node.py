"""Node.js (V8): what can be known from outside, and what cannot.

V8 keeps its heap statistics (per space: new, old, code, map, large object; size, used,
available) in the isolate's ``Heap`` object. From outside the process that object is reachable
only through the isolate pointer V8 keeps in thread-local storage, and its layout changes with
every V8 release; node ships layout metadata (the ``v8dbg_*`` postmortem symbols llnode uses) for
JavaScript objects only, not for the heap's spaces. So memtop does not read V8's heap figures:
they are shown as unknown with that reason, and the runtime's own tools are named. What the
kernel layers show (the V8 pages' resident bytes under "runtime", glibc's arenas for node's
native side) still applies.
"""

from __future__ import annotations

from memtop.model.findings import Finding, Severity
from memtop.model.runtime import RuntimeReport, Unknown
from memtop.runtime import Target

WHY = ("V8's heap statistics live in the isolate's Heap object, reachable only through a thread-local "
       "pointer and laid out differently in every V8 release; node ships no layout metadata for it "
       "(its v8dbg_ symbols describe JavaScript objects only), so it is not read from outside")


def node_report(target: Target) -> RuntimeReport:
    unknowns = tuple(Unknown(what, WHY) for what in (
        "V8 heap spaces (new, old, code, map, large object): size and used",
        "heapUsed / heapTotal / external / arrayBuffers (process.memoryUsage())",
    ))
    advice = Finding(Severity.INFO, "V8's own figures are read inside the process: "
                                    "`node -e` is no help for a running one; use `kill -USR1 PID` then an inspector "
                                    "client (opens a debug port: a decision for the owner), or have the service log "
                                    "process.memoryUsage() and v8.getHeapSpaceStatistics().",
                     "--max-old-space-size=N caps the old space; --trace-gc shows each collection.")
    return RuntimeReport("node", target.runtime_version, "unavailable", WHY, None, (), (), unknowns, (advice,))

"""Socket states of the selected process (psutil's net_connections), on real sockets: a child
holds connections whose peers the test closes (CLOSE_WAIT) and one left open (ESTABLISHED); the
Kernel part's fd breakdown counts each state, the Kernel tab's fd line names CLOSE_WAIT, and
`snapshot --json` carries the same counts."""

from __future__ import annotations

import socket
import time

from memtop.collect.kernel import KernelCollector
from memtop.collect.sampler import Sampler
from memtop.output.kernel import breakdown_json

CHILD = r"""
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
print("READY", flush=True)
sys.stdin.readline()
"""


def _breakdown(pid):
    sampler = Sampler()
    try:
        snapshot = sampler.sample()
        return KernelCollector().collect(snapshot, pid, namespaces=False).fd_breakdown
    finally:
        sampler.close()


def test_close_wait_sockets_are_counted_and_named(children):
    import sys

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    try:
        child = children.start([sys.executable, "-c", CHILD, str(port), "5"])
        accepted = [server.accept()[0] for _ in range(5)]
        for conn in accepted[:3]:  # the peer closes three: the child's ends go to CLOSE_WAIT
            conn.close()
        deadline = time.monotonic() + 10
        while True:
            b = _breakdown(child.pid)
            if b.socket_states is not None and b.socket_states.get("CLOSE_WAIT") == 3:
                break
            assert time.monotonic() < deadline, (b.socket_states, b.socket_states_reason)
            time.sleep(0.1)
        assert b.sockets == 5
        assert dict(b.socket_states) == {"CLOSE_WAIT": 3, "ESTABLISHED": 2}
        assert b.socket_states_reason is None
        assert breakdown_json(b)["socket_states"] == {"CLOSE_WAIT": 3, "ESTABLISHED": 2}

        from memtop.model.kernel import KernelView  # noqa: F401 - the tab's text from this breakdown
        from memtop.tui.kernel import fds_text

        class View:
            target_pid = child.pid
            fd_breakdown = b
            fd_breakdown_reason = None
            growers = ()
            file_nr = None
            file_nr_reason = "n/a"

        class Target:
            pid = child.pid

        text = fds_text(View(), Target(), None, 300).plain
        assert "CLOSE_WAIT 3 (the peers closed, this process never did" in text
        assert "inet ESTABLISHED 2" in text
        for conn in accepted[3:]:
            conn.close()
    finally:
        server.close()


def test_a_captured_tree_says_why_states_are_unknown(tmp_path):
    from memtop.procfs.kernel import read_socket_states

    states, reason = read_socket_states(1, tmp_path)
    assert states is None and "live /proc only" in reason

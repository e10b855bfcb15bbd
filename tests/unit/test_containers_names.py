"""container_of: cgroup paths as the runtimes write them -> what the process runs in.

Each row says where the layout is specified. The IDs are made up for the table (64 hex digits,
as every runtime below uses); the shapes around them are the runtimes' own:

[moby]     Docker: dockerd's default cgroup parent "/docker" (cgroupfs driver); with
           native.cgroupdriver=systemd runc names the unit "<prefix>-<name>.scope" from
           cgroupsPath "system.slice:docker:<id>" (runc libcontainer/cgroups/systemd).
[rootless] Docker rootless on cgroup v2 (docs.docker.com/engine/security/rootless): the daemon
           runs as a user service, containers in that user's manager.
[kubelet]  pkg/kubelet/cm/cgroup_manager_linux.go: CgroupName{"kubepods","burstable","pod<uid>"}
           ToCgroupfs "/kubepods/burstable/pod<uid>", ToSystemd
           "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice";
           Guaranteed pods sit directly under kubepods (qos_container_manager_linux.go);
           SystemdPathPrefixOfRuntime: cri-o -> "crio", containerd -> "cri-containerd".
[kind]     kind nodes are Docker containers whose kubelet runs with --cgroup-root=/kubelet.
[crio]     CRI-O with cgroup_manager = "cgroupfs": "crio-<id>" below the pod; its conmon in
           "crio-conmon-<id>.scope" (systemd manager).
[podman]   podman-run(1) --cgroups / --cgroup-parent: "machine.slice/libpod-<id>.scope", the
           monitor "libpod-conmon-<id>.scope", pods "machine-libpod_pod_<podid>.slice" (podman pod
           inspect's CgroupPath), rootless "user-libpod_pod_<podid>.slice" under user@UID.service,
           cgroupfs manager "/libpod_parent/libpod-<id>"; with --systemd the payload moves to a
           "container" child of the scope.
[lxc]      lxc.container.conf(5) lxc.cgroup.dir.container / .monitor: LXC 4+ "lxc.payload.<name>",
           "lxc.monitor.<name>"; LXC 3 and older "/lxc/<name>".
[machined] systemd-machined.service(8): "machine.slice/machine-<escaped name>.scope" (libvirt
           registers "qemu-<n>-<domain>"), systemd-nspawn@.service.
[ecs]      Amazon ECS agent: "/ecs/<task id>/<container id>"; Fargate platform 1.4 names
           containers "<task id>-<number>".
[systemd]  systemd.unit(5), systemd.special(7), systemd.io/DESKTOP_ENVIRONMENTS (app-*.scope in a
           user's app.slice), systemd-escape(1) (\x2d is "-").
[host]     captured on this machine: /proc/self/cgroup (memory line) of this test session.
"""

from __future__ import annotations

import pytest

from memtop.model.containers import (
    CGROUP,
    CONTAINER,
    HOST,
    MACHINE,
    MONITOR,
    POD,
    SCOPE,
    SERVICE,
    SESSION,
    SLICE,
    ContainerId,
    container_of,
    unescape_unit,
)
from memtop.text import json_value, printable

A = "9a6916f3ddc6ca8cf1ca83e789b92e38788f54c112ecbd9bbd2bbb8919a43f4e"
B = "0f3f9d124f5b5f39259c48b202f4a04dfae0b6d7f5255104c19c37f5d07e6920"
C = "f7186d7c4647d19454fc4fbe399cb3f66028d1977a99d8d183cbfa561f9de01e"
POD_UID = "9db9c1df-933b-410d-8a10-791ee4e56467"
POD_UID_ = POD_UID.replace("-", "_")
STATIC_UID = "f5cb30b7409ad8f68dcf73f4aee08427"  # a static (mirror) pod: a hash, no dashes

# (source, path, expected fields, expected container cgroup)
TABLE = [
    # --- Docker
    ("moby", f"/docker/{A}", dict(kind=CONTAINER, runtime="docker", id=A, name=A[:12]), f"/docker/{A}"),
    ("moby", f"/system.slice/docker-{A}.scope", dict(kind=CONTAINER, runtime="docker", id=A, unit=f"docker-{A}.scope"),
     f"/system.slice/docker-{A}.scope"),
    ("moby", f"/docker/{A}/docker/{B}", dict(kind=CONTAINER, runtime="docker", id=B), f"/docker/{A}/docker/{B}"),
    ("rootless", f"/user.slice/user-1001.slice/user@1001.service/user.slice/docker-{A}.scope",
     dict(kind=CONTAINER, runtime="docker", id=A, uid=1001),
     f"/user.slice/user-1001.slice/user@1001.service/user.slice/docker-{A}.scope"),
    # --- Kubernetes, systemd driver
    ("kubelet", f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_}.slice/cri-containerd-{A}.scope",
     dict(kind=CONTAINER, runtime="containerd", orchestrator="kubernetes", pod_uid=POD_UID, qos="burstable", id=A),
     f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_}.slice/cri-containerd-{A}.scope"),
    ("kubelet", f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UID_}.slice/crio-{A}.scope",
     dict(kind=CONTAINER, runtime="cri-o", pod_uid=POD_UID, qos="besteffort"),
     f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UID_}.slice/crio-{A}.scope"),
    ("kubelet", f"/kubepods.slice/kubepods-pod{POD_UID_}.slice/docker-{A}.scope",
     dict(kind=CONTAINER, runtime="docker", pod_uid=POD_UID, qos="guaranteed"),
     f"/kubepods.slice/kubepods-pod{POD_UID_}.slice/docker-{A}.scope"),
    ("kubelet", f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_UID}.slice/cri-containerd-{A}.scope",
     dict(kind=CONTAINER, pod_uid=STATIC_UID, qos="burstable"),
     f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_UID}.slice/cri-containerd-{A}.scope"),
    ("kubelet", f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_}.slice",
     dict(kind=POD, pod_uid=POD_UID, qos="burstable", orchestrator="kubernetes"),
     f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_}.slice"),
    ("crio", f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_}.slice/crio-conmon-{A}.scope",
     dict(kind=MONITOR, runtime="cri-o", pod_uid=POD_UID, name=f"conmon {A[:12]}"),
     f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_}.slice/crio-conmon-{A}.scope"),
    # --- Kubernetes, cgroupfs driver
    ("kubelet", f"/kubepods/burstable/pod{POD_UID}/{A}",
     dict(kind=CONTAINER, runtime=None, orchestrator="kubernetes", pod_uid=POD_UID, qos="burstable", id=A),
     f"/kubepods/burstable/pod{POD_UID}/{A}"),
    ("kubelet", f"/kubepods/besteffort/pod{POD_UID}/{A}", dict(kind=CONTAINER, qos="besteffort", pod_uid=POD_UID),
     f"/kubepods/besteffort/pod{POD_UID}/{A}"),
    ("kubelet", f"/kubepods/pod{POD_UID}/{A}", dict(kind=CONTAINER, qos="guaranteed", pod_uid=POD_UID),
     f"/kubepods/pod{POD_UID}/{A}"),
    ("kubelet", f"/kubepods/burstable/pod{POD_UID}", dict(kind=POD, qos="burstable", pod_uid=POD_UID),
     f"/kubepods/burstable/pod{POD_UID}"),
    ("crio", f"/kubepods/burstable/pod{POD_UID}/crio-{A}", dict(kind=CONTAINER, runtime="cri-o", qos="burstable"),
     f"/kubepods/burstable/pod{POD_UID}/crio-{A}"),
    # --- kind: Kubernetes in Docker (the deepest container wins)
    ("kind", f"/docker/{B}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
             f"kubelet-kubepods-besteffort-pod{POD_UID_}.slice/cri-containerd-{A}.scope",
     dict(kind=CONTAINER, runtime="containerd", pod_uid=POD_UID, qos="besteffort", id=A),
     f"/docker/{B}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
     f"kubelet-kubepods-besteffort-pod{POD_UID_}.slice/cri-containerd-{A}.scope"),
    ("kind", f"/docker/{B}/system.slice/containerd.service", dict(kind=CONTAINER, runtime="docker", id=B),
     f"/docker/{B}"),
    # --- podman
    ("podman", f"/machine.slice/libpod-{A}.scope", dict(kind=CONTAINER, runtime="podman", id=A, pod_uid=None),
     f"/machine.slice/libpod-{A}.scope"),
    ("podman", f"/machine.slice/libpod-{A}.scope/container", dict(kind=CONTAINER, runtime="podman", id=A),
     f"/machine.slice/libpod-{A}.scope"),
    ("podman", f"/machine.slice/libpod-conmon-{A}.scope", dict(kind=MONITOR, runtime="podman", id=A),
     f"/machine.slice/libpod-conmon-{A}.scope"),
    ("podman", f"/machine.slice/machine-libpod_pod_{C}.slice/libpod-{A}.scope",
     dict(kind=CONTAINER, runtime="podman", id=A, pod_uid=C, orchestrator="podman-pod"),
     f"/machine.slice/machine-libpod_pod_{C}.slice/libpod-{A}.scope"),
    ("podman", f"/user.slice/user-1000.slice/user@1000.service/user.slice/user-libpod_pod_{C}.slice/libpod-{A}.scope",
     dict(kind=CONTAINER, runtime="podman", pod_uid=C, uid=1000),
     f"/user.slice/user-1000.slice/user@1000.service/user.slice/user-libpod_pod_{C}.slice/libpod-{A}.scope"),
    ("podman", f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{A}.scope",
     dict(kind=CONTAINER, runtime="podman", uid=1000), f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{A}.scope"),
    ("podman", f"/libpod_parent/libpod-{A}", dict(kind=CONTAINER, runtime="podman", id=A), f"/libpod_parent/libpod-{A}"),
    # --- LXC / LXD
    ("lxc", "/lxc.payload.web1", dict(kind=CONTAINER, runtime="lxc", name="web1", id="web1"), "/lxc.payload.web1"),
    ("lxc", "/lxc.payload.web1/system.slice/nginx.service", dict(kind=CONTAINER, runtime="lxc", name="web1"),
     "/lxc.payload.web1"),
    ("lxc", "/lxc.monitor.web1", dict(kind=MONITOR, runtime="lxc", name="monitor web1"), "/lxc.monitor.web1"),
    ("lxc", "/lxc/web1", dict(kind=CONTAINER, runtime="lxc", name="web1"), "/lxc/web1"),
    # --- systemd-machined
    ("machined", r"/machine.slice/machine-qemu\x2d1\x2dfedora.scope/libvirt/emulator",
     dict(kind=MACHINE, name="qemu-1-fedora", runtime="machined", unit="machine-qemu-1-fedora.scope"),
     r"/machine.slice/machine-qemu\x2d1\x2dfedora.scope"),
    ("machined", "/machine.slice/systemd-nspawn@debian.service/payload",
     dict(kind=MACHINE, name="debian", runtime="systemd-nspawn"), "/machine.slice/systemd-nspawn@debian.service"),
    # --- ECS
    ("ecs", f"/ecs/5a0d5ceddf6c44c1928d367a815d890f/{A}",
     dict(kind=CONTAINER, runtime="ecs", pod_uid="5a0d5ceddf6c44c1928d367a815d890f", id=A),
     f"/ecs/5a0d5ceddf6c44c1928d367a815d890f/{A}"),
    ("ecs", "/ecs/5a0d5ceddf6c44c1928d367a815d890f/5a0d5ceddf6c44c1928d367a815d890f-3851392031",
     dict(kind=CONTAINER, runtime="ecs", id="5a0d5ceddf6c44c1928d367a815d890f-3851392031"),
     "/ecs/5a0d5ceddf6c44c1928d367a815d890f/5a0d5ceddf6c44c1928d367a815d890f-3851392031"),
    # --- systemd units
    ("systemd", "/system.slice/nginx.service", dict(kind=SERVICE, name="nginx.service", unit="nginx.service", uid=None),
     "/system.slice/nginx.service"),
    ("systemd", "/system.slice/system-getty.slice/getty@tty1.service", dict(kind=SERVICE, name="getty@tty1.service"),
     "/system.slice/system-getty.slice/getty@tty1.service"),
    ("systemd", "/user.slice/user-1000.slice/session-3.scope", dict(kind=SESSION, name="session-3.scope", uid=1000),
     "/user.slice/user-1000.slice/session-3.scope"),
    ("systemd", "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-2843.scope",
     dict(kind=SCOPE, name="app-gnome-firefox-2843.scope", uid=1000),
     "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-2843.scope"),
    ("systemd", "/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service",
     dict(kind=SERVICE, name="pipewire.service", uid=1000),
     "/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service"),
    ("systemd", "/user.slice/user-1000.slice/user@1000.service/init.scope", dict(kind=SCOPE, name="init.scope", uid=1000),
     "/user.slice/user-1000.slice/user@1000.service/init.scope"),
    ("systemd", "/init.scope", dict(kind=SCOPE, name="init.scope", uid=None), "/init.scope"),
    ("systemd", "/user.slice/user-1000.slice", dict(kind=SLICE, name="user-1000.slice", uid=1000),
     "/user.slice/user-1000.slice"),
    ("systemd", r"/system.slice/system-systemd\x2dfsck.slice/systemd-fsck@dev-disk-by\x2duuid-1234.service",
     dict(kind=SERVICE, name="systemd-fsck@dev-disk-by-uuid-1234.service"),
     r"/system.slice/system-systemd\x2dfsck.slice/systemd-fsck@dev-disk-by\x2duuid-1234.service"),
    # --- plain cgroups and the root
    ("host", "/process_api/1892740ae12ef9ca2dbbe674495b39a5",
     dict(kind=CGROUP, name="1892740ae12ef9ca2dbbe674495b39a5"), "/process_api/1892740ae12ef9ca2dbbe674495b39a5"),
    ("host", "/memtop-test-4242-1", dict(kind=CGROUP, name="memtop-test-4242-1"), "/memtop-test-4242-1"),
    ("host", "/", dict(kind=HOST, name="/"), "/"),
    ("host", "", dict(kind=HOST, name="/"), "/"),
    # Look-alikes that are not containers: too short an ID, a "docker-" scope with no ID.
    ("moby", f"/docker/{A[:40]}", dict(kind=CGROUP, name=A[:40]), f"/docker/{A[:40]}"),
    ("moby", "/system.slice/docker.service", dict(kind=SERVICE, name="docker.service"), "/system.slice/docker.service"),
]


@pytest.mark.parametrize("source,path,expected,cgroup", TABLE, ids=[f"{r[0]}:{r[1][-50:]}" for r in TABLE])
def test_container_of_the_documented_layouts(source, path, expected, cgroup):
    found = container_of(path)
    assert found.cgroup == cgroup
    for key, value in expected.items():
        assert getattr(found, key) == value, (key, found)
    # The container's cgroup is the path itself or one of its ancestors: its memory files count
    # every process of the container.
    assert path.rstrip("/") == cgroup.rstrip("/") or path.startswith(cgroup.rstrip("/") + "/")


def test_kubernetes_ids_are_shown_short_and_the_label_carries_the_pod():
    found = container_of(f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_}.slice/cri-containerd-{A}.scope")
    assert found.name == A[:12] and found.short_id == A[:12]
    assert found.label == f"containerd {A[:12]} pod {POD_UID}"
    assert container_of("/user.slice/user-1000.slice/session-3.scope").label == "session session-3.scope uid 1000"


def test_systemd_escapes_are_decoded_as_bytes():
    assert unescape_unit(r"machine-qemu\x2d1\x2dvm.scope") == "machine-qemu-1-vm.scope"
    # \xc3\xa9 is "é" in UTF-8; a lone \xff is not UTF-8 and stays a byte (surrogateescape).
    assert unescape_unit(r"caf\xc3\xa9.service") == "café.service"
    odd = unescape_unit(r"a\xffb.service")
    assert odd == "a\udcffb.service" and json_value(odd) == list(b"a\xffb.service")


def test_hostile_cgroup_names_stay_exact_and_print_escaped():
    # Anyone with a delegated cgroup subtree picks these names: ESC sequences, newlines, bidi.
    evil = "/user.slice/user-1000.slice/user@1000.service/app.slice/\x1b]0;owned\x07\u202e.service"
    found = container_of(evil)
    assert found.kind == SERVICE and found.name == "\x1b]0;owned\x07\u202e.service"
    shown = printable(found.label)
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "\\e]0;owned\\a\\u202e.service" in shown
    escaped = container_of(r"/system.slice/x\x1b\x5b2J.service")  # an escape spelt with systemd's \x
    assert escaped.name == "x\x1b[2J.service" and "\\e[2J" in printable(escaped.name)
    long = "/" + "/".join(["a" * 255] * 16)
    assert container_of(long).kind == CGROUP


def test_every_result_is_a_container_id():
    for _source, path, _expected, _cgroup in TABLE:
        assert isinstance(container_of(path), ContainerId)

"""Friendlier names from the runtimes' own files, in a host root made for the test, and the
refusals that keep a hostile file from being read.

The files follow the runtimes' formats: Docker's /var/lib/docker/containers/<id>/config.v2.json is
moby's container.Container as JSON ("ID", "Name" with a leading slash, "Config"."Labels"; the
io.kubernetes.* labels are the ones dockershim and cri-dockerd set); containers-storage's
overlay-containers/containers.json is a list of {"id", "names", ...} (CRI-O names
"k8s_<container>_<pod>_<namespace>_<uid>_<attempt>"); the kubelet's log directories are
/var/log/pods/<namespace>_<pod>_<uid>/ and /var/log/containers/<pod>_<namespace>_<container>-<id>.log
(symbolic links into /var/log/pods, never followed here).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from memtop.model.containers import container_of
from memtop.procfs.containers import DOCKER_CONFIG_LIMIT, ContainerNames

A = "9a6916f3ddc6ca8cf1ca83e789b92e38788f54c112ecbd9bbd2bbb8919a43f4e"
B = "0f3f9d124f5b5f39259c48b202f4a04dfae0b6d7f5255104c19c37f5d07e6920"
POD_UID = "9db9c1df-933b-410d-8a10-791ee4e56467"
NOBODY = 65534


def docker_config(name: str, labels: dict | None = None) -> str:
    return json.dumps({
        "StreamConfig": {}, "State": {"Running": True, "Pid": 4242, "ExitCode": 0},
        "ID": A, "Created": "2024-05-02T10:11:12.123456789Z", "Managed": False, "Path": "nginx",
        "Args": ["-g", "daemon off;"],
        "Config": {"Hostname": A[:12], "Image": "nginx:1.25", "Labels": labels or {"maintainer": "NGINX"}},
        "Image": "sha256:" + B, "Name": name, "Driver": "overlay2", "RestartCount": 0,
    })


def write(root: Path, rel: str, text: str, mode: int = 0o644) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def host(tmp_path):
    root = tmp_path / "host"
    root.mkdir()
    return root


def names(host: Path, **kw) -> ContainerNames:
    return ContainerNames(str(host), **kw)


def docker(cid=A):
    return container_of(f"/system.slice/docker-{cid}.scope")


def test_docker_name_from_config_v2_json(host):
    write(host, f"var/lib/docker/containers/{A}/config.v2.json", docker_config("/web-1"))
    found = names(host).resolve(docker())
    assert found.name == "web-1" and found.name_source == "docker config.v2.json" and found.id == A
    assert docker(B) == names(host).resolve(docker(B))  # no file for B: as it was, no complaint


def test_docker_kubernetes_labels_name_the_container_and_its_pod(host):
    labels = {"io.kubernetes.container.name": "api", "io.kubernetes.pod.name": "shop-7d4b9c",
              "io.kubernetes.pod.namespace": "prod"}
    write(host, f"var/lib/docker/containers/{A}/config.v2.json", docker_config("/k8s_api_shop-7d4b9c_prod_x_0", labels))
    found = names(host).resolve(docker())
    assert (found.name, found.pod_name, found.namespace) == ("api", "shop-7d4b9c", "prod")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files away")
@pytest.mark.parametrize("case", ["symlink", "not-root", "group-writable-dir", "too-big", "fifo", "not-json"])
def test_hostile_docker_files_are_refused(host, tmp_path, case):
    directory = host / f"var/lib/docker/containers/{A}"
    directory.mkdir(parents=True)
    config = directory / "config.v2.json"
    if case == "symlink":
        elsewhere = write(tmp_path, "elsewhere.json", docker_config("/evil"))
        config.symlink_to(elsewhere)
    elif case == "not-root":
        write(host, f"var/lib/docker/containers/{A}/config.v2.json", docker_config("/evil"))
        os.chown(config, NOBODY, NOBODY)
    elif case == "group-writable-dir":
        write(host, f"var/lib/docker/containers/{A}/config.v2.json", docker_config("/evil"))
        (host / "var/lib/docker/containers").chmod(0o775)
    elif case == "too-big":
        write(host, f"var/lib/docker/containers/{A}/config.v2.json", " " * (DOCKER_CONFIG_LIMIT + 1) + "{}")
    elif case == "fifo":
        os.mkfifo(config)
    elif case == "not-json":
        write(host, f"var/lib/docker/containers/{A}/config.v2.json", "{not json")
    resolver = names(host)
    started = time.monotonic()
    found = resolver.resolve(docker())
    assert time.monotonic() - started < 5  # a FIFO never blocks the reader
    assert found.name == A[:12] and found.name_source == "cgroup path"
    why = resolver.unknown["docker"]
    expected = {"symlink": "symbolic link", "not-root": "not root", "group-writable-dir": "writable by its group",
                "too-big": "more than", "fifo": "not a regular file", "not-json": "not JSON"}[case]
    assert expected in why, why


def test_kubernetes_names_from_the_kubelets_log_directories(host):
    (host / f"var/log/pods/prod_shop-7d4b9c_{POD_UID}/api").mkdir(parents=True)
    (host / "var/log/containers").mkdir(parents=True)
    link = host / f"var/log/containers/shop-7d4b9c_prod_api-{A}.log"
    link.symlink_to(f"/var/log/pods/prod_shop-7d4b9c_{POD_UID}/api/0.log")  # dangling here: never followed
    pod_slice = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID.replace('-', '_')}.slice"
    resolver = names(host)
    container = resolver.resolve(container_of(f"{pod_slice}/cri-containerd-{A}.scope"))
    assert (container.name, container.pod_name, container.namespace) == ("api", "shop-7d4b9c", "prod")
    assert container.name_source == "/var/log/containers"
    pod = resolver.resolve(container_of(pod_slice))
    assert pod.name == "prod/shop-7d4b9c" and pod.kind == "pod"
    # A container not in the listing keeps its ID, its pod still gets a name.
    other = resolver.resolve(container_of(f"{pod_slice}/cri-containerd-{B}.scope"))
    assert other.name == B[:12] and other.pod_name == "shop-7d4b9c"


def test_kubernetes_log_directory_writable_by_a_group_is_not_trusted(host):
    (host / f"var/log/pods/prod_shop_{POD_UID}").mkdir(parents=True)
    (host / "var/log").chmod(0o775)  # Ubuntu: root:syslog 775
    resolver = names(host)
    found = resolver.resolve(container_of(f"/kubepods/burstable/pod{POD_UID}/{A}"))
    assert found.pod_name is None and "writable by its group" in resolver.unknown["kubernetes"]


def test_podman_and_crio_names_from_containers_storage(host):
    entries = [{"id": A, "names": ["db"], "image": "sha256:" + B, "layer": "x", "metadata": "{}"},
               {"id": B, "names": [f"k8s_api_shop-7d4b9c_prod_{POD_UID}_0"], "image": "y", "layer": "z"}]
    write(host, "var/lib/containers/storage/overlay-containers/containers.json", json.dumps(entries))
    resolver = names(host)
    podman = resolver.resolve(container_of(f"/machine.slice/libpod-{A}.scope"))
    assert podman.name == "db" and podman.name_source == "containers-storage containers.json"
    crio = resolver.resolve(container_of(f"/kubepods/burstable/pod{POD_UID}/crio-{B}"))
    assert (crio.name, crio.pod_name, crio.namespace) == ("api", "shop-7d4b9c", "prod")
    # Rootless podman keeps its storage in the user's home: not read, the ID stays.
    rootless = container_of(f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{A}.scope")
    assert resolver.resolve(rootless).name == A[:12]


def test_sources_are_reread_at_most_so_often(host):
    now = [100.0]
    resolver = names(host, refresh_s=60, min_interval_s=5, clock=lambda: now[0])
    pod_slice = f"/kubepods/burstable/pod{POD_UID}"
    (host / "var/log/pods").mkdir(parents=True)
    assert resolver.resolve(container_of(f"{pod_slice}/{A}")).pod_name is None
    (host / f"var/log/pods/prod_shop_{POD_UID}").mkdir()
    now[0] += 1  # too soon, even for an unknown pod
    assert resolver.resolve(container_of(f"{pod_slice}/{A}")).pod_name is None
    now[0] += 5
    assert resolver.resolve(container_of(f"{pod_slice}/{A}")).pod_name == "shop"

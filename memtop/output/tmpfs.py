"""The ``tmpfs`` section of ``memtop snapshot --json``: memory-backed mounts, deleted-but-open
files, SysV / POSIX / memfd shared memory and the reconciliation with meminfo Shmem."""

from __future__ import annotations

from memtop.model.tmpfs import Holder, ShmemPart, TmpfsReport


def _holder(h: Holder) -> dict:
    return {"pid": h.pid, "comm": h.comm, "fd": h.fd, "mapped": h.mapped}


def _part(p: ShmemPart) -> dict:
    return {"name": p.name, "bytes": p.bytes, "quality": p.quality, "source": p.source, "note": p.note}


def report_json(report: TmpfsReport) -> dict:
    """The report as JSON-ready data. Unknown values are null, never 0."""
    rec = report.reconciliation
    return {
        "mounts": [
            {
                "mountpoint": m.mountpoint,
                "fstype": m.fstype,
                "source": m.info.source,
                "device": m.device,
                "mount_id": m.info.mount_id,
                "mount_namespace": m.namespace,
                "seen_through_pid": m.namespace_pid,
                "size_bytes": m.size_bytes,
                "used_bytes": m.used_bytes,
                "avail_bytes": m.avail_bytes,
                "inodes_total": m.inodes_total,
                "inodes_used": m.inodes_used,
                "in_shmem": m.in_shmem,
                "covered_by_mount_id": m.covered_by,
                "same_filesystem_as": m.duplicate_of,
                "unknown_reason": m.usage_reason,
            }
            for m in report.mounts
        ],
        "deleted_open": [
            {
                "path": d.path,
                "bytes": d.allocated_bytes,
                "size_bytes": d.size_bytes,
                "device": d.device,
                "inode": d.inode,
                "fstype": d.fstype,
                "mountpoint": d.mountpoint,
                "holders": [_holder(h) for h in d.holders],
                "unknown_reason": d.reason,
            }
            for d in report.deleted_open
        ],
        "sysv": [
            {
                "key": s.key,
                "shmid": s.shmid,
                "perms": f"{s.perms:o}",
                "size_bytes": s.size_bytes,
                "rss_bytes": s.rss_bytes,
                "swap_bytes": s.swap_bytes,
                "nattch": s.nattch,
                "orphan": s.orphan,
                "marked_for_removal": s.marked_for_removal,
                "uid": s.uid,
                "owner": s.owner,
                "creator_pid": s.cpid,
                "last_pid": s.lpid,
                "attach_time": s.atime or None,
                "detach_time": s.dtime or None,
                "change_time": s.ctime or None,
                "attached_pids": list(s.attached_pids),
            }
            for s in report.sysv
        ],
        "posix_shm": [
            {
                "path": f.path,
                "size_bytes": f.size_bytes,
                "allocated_bytes": f.allocated_bytes,
                "mtime": f.mtime,
                "owner": f.owner,
                "holders": [_holder(h) for h in f.holders],
            }
            for f in report.posix
        ],
        "shmem_objects": [
            {
                "kind": o.kind,
                "name": o.name,
                "inode": o.inode,
                "size_bytes": o.size_bytes,
                "allocated_bytes": o.allocated_bytes,
                "hugetlb": o.hugetlb,
                "holders": [_holder(h) for h in o.holders],
                "unknown_reason": o.reason,
            }
            for o in report.objects
        ],
        "shmem_mappings": [
            {
                "pid": m.pid,
                "comm": m.comm,
                "kind": m.kind,
                "name": m.name,
                "inode": m.inode,
                "vma_bytes": m.vma_bytes,
                "rss_bytes": m.rss_bytes,
                "pss_bytes": m.pss_bytes,
                "swap_bytes": m.swap_bytes,
            }
            for m in report.mappings
        ],
        "shmem_reconciliation": {
            "shmem_bytes": rec.shmem_bytes,
            "parts": [_part(p) for p in rec.parts],
            "remainder_bytes": rec.remainder_bytes,
            "outside_shmem": [_part(p) for p in rec.outside_shmem],
            "notes": list(rec.notes),
        },
        "mount_namespaces": [
            {"inode": ns, "seen_through_pid": pid, "processes": count} for ns, pid, count in report.namespaces
        ],
        "warnings": list(report.warnings),
    }


def snapshot_section(sample) -> dict:
    """The snapshot's ``tmpfs`` section (the Collector's tmpfs part)."""
    result = sample.result("tmpfs")
    if result is None or result.value is None:
        return {"error": result.error if result is not None else "not read"}
    return report_json(result.value)

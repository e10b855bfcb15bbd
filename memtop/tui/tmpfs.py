"""The tmpfs tab: RAM held by files. Memory-backed mounts (every mount namespace seen), their
largest and oldest files, deleted-but-open files with their holders, SysV / POSIX / memfd
shared memory, and what all of it explains of meminfo Shmem.

It renders two parts of the Collector, read only while the tab is shown (memtop/collect/parts.py):
``tmpfs``, the collection pass (memtop.collect.tmpfs collect_report: mountinfo, statvfs, fd
links, maps, bounded smaps; at most every tick and never more than ~5 % of a core), and
``tmpfs_scan``, the file scan of one mount (on demand, with progress).
"""

from __future__ import annotations

import time
from typing import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import ContentSwitcher, DataTable, Static, Tab, Tabs

from memtop.format import counted, fmt_bytes, fmt_count, fmt_duration, fmt_percent
from memtop.model.sample import Sample
from memtop.model.tmpfs import Holder, Mount, ScanResult, TmpfsReport
from memtop.text import printable
from memtop.tui.tab import NOT_RECORDED, TabView
from memtop.tui.widgets import update_static

PASS_DUTY_FACTOR = 20  # a pass costing c seconds of CPU runs at most every 20c seconds

SECTIONS = (
    ("mounts", "Mounts", "m"),
    ("files", "Files", "f"),
    ("deleted", "Deleted", "d"),
    ("sysv", "SysV", "v"),
    ("posix", "POSIX", "x"),
    ("memfd", "memfd", "e"),
    ("shmem", "Shmem", "c"),
)
# The section keys take one place in the footer: "m f d v x e c Sections".
SECTION_KEYS = Binding.Group("Sections")

COLUMNS: dict[str, tuple[tuple[str, int | None], ...]] = {
    # (title, width); None: the flexible column
    "mounts": (("MOUNTPOINT", None), ("TYPE", 8), ("USED", 8), ("SIZE", 8), ("USE%", 4), ("NOTE", 22),
               ("INODES", 9), ("NS", 8)),
    "files": (("PATH", None), ("ALLOC", 9), ("SIZE", 9), ("AGE", 7), ("OWNER", 8)),
    "deleted": (("DELETED FILE", None), ("KEPT", 9), ("SIZE", 9), ("HOLDERS", 30), ("MOUNT", 12)),
    "sysv": (("KEY", 10), ("SHMID", 6), ("SIZE", 9), ("RSS", 9), ("SWAP", 8), ("NATT", 4), ("OWNER", 8),
             ("CPID", 7), ("ATTACHED", 10), ("STATE", None)),
    "posix": (("NAME", None), ("ALLOC", 9), ("SIZE", 9), ("AGE", 7), ("OWNER", 8), ("HOLDERS", 24)),
    "memfd": (("PID", 7), ("COMM", 15), ("KIND", 6), ("NAME", None), ("MAPPED", 9), ("RSS", 9), ("PSS", 9),
              ("SWAP", 7), ("OBJECT", 9)),
    "shmem": (("PART", 18), ("BYTES", 9), ("SHARE", 5), ("QUALITY", 11), ("WHAT IT IS", None)),
}


def clip(text):
    """A cell that ends in "…" when cut to its column's width: DataTable wraps a Text cell and
    shows its first line, which cuts it mid-word with no mark. The value itself stays whole."""
    if not isinstance(text, Text):
        return text
    text = text.copy()
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def holders_text(holders: tuple[Holder, ...], limit: int = 3) -> str:
    """``4242 worker fd 7+map, 4300 worker fd 5`` (one entry per process)."""
    per_pid: dict[int, list[str]] = {}
    comms: dict[int, str] = {}
    for h in holders:
        comms[h.pid] = h.comm
        per_pid.setdefault(h.pid, []).append(f"fd {h.fd}" if h.fd is not None else "map")
    parts = [f"{pid} {printable(comms[pid])} {'+'.join(how)}" for pid, how in per_pid.items()]
    if len(parts) > limit:
        parts = parts[:limit] + [f"+{len(parts) - limit} more"]
    return ", ".join(parts) if parts else "—"


def _ns_text(m: Mount) -> str:
    return "own" if m.namespace_pid is None else f"pid {m.namespace_pid}"


class TmpfsTab(TabView):
    TAB_TITLE = "tmpfs"
    TAB_ID = "tmpfs"
    TAB_ABOUT = "RAM held by files: tmpfs mounts, deleted-but-open files, SysV/POSIX/memfd shared memory"
    FIGURE_SOURCES = (
        ("mounts", "/proc/self/mountinfo, and /proc/PID/mountinfo once per other mount namespace "
                   "(stat /proc/PID/ns/mnt): tmpfs, ramfs, hugetlbfs, devtmpfs"),
        ("SIZE USED INODES", "statvfs(2) of the mountpoint (/proc/PID/root/MOUNTPOINT in another namespace); "
                             "? when the filesystem reports none (size=0, ramfs) or the mount is covered"),
        ("files ALLOC / SIZE", "lstat(2) of each file during the scan: st_blocks*512 / st_size (a sparse file "
                               "holds less than its size); symlinks not followed, other mounts not entered"),
        ("AGE", "now minus st_mtime"),
        ("deleted KEPT", "stat(/proc/PID/fd/N) st_blocks*512 of fd links ending in \" (deleted)\" on a "
                         "memory-backed device; /proc/PID/map_files/A-B for files only mapped (maps)"),
        ("SysV", "/proc/sysvipc/shm: size, rss, swap, nattch, cpid, ATTACHED = now - atime; attached PIDs from maps "
                 "\"/SYSV<key>\" lines (inode = shmid); ORPHAN: nattch 0"),
        ("POSIX", "files in /dev/shm (shm_open(3)); holders from fd links and maps with the same inode"),
        ("memfd RSS PSS SWAP", "/proc/PID/smaps of \"/memfd:\" and \"/dev/zero (deleted)\" mappings "
                               "(read in a worker, for at most 32 processes per pass)"),
        ("memfd OBJECT", "fstat of the memfd / shared anonymous object (fd or map_files): st_blocks*512"),
        ("Shmem parts", "meminfo Shmem, split into the parts above; see the Shmem section for each source"),
    )
    TAB_KEYS = (
        ("m f d v x e c", "sections: mounts, files, deleted, SysV, POSIX, memfd, Shmem"),
        ("r", "scan the files of the selected mount (again)"),
        ("s", "files: largest or oldest first"),
        ("Enter", "open the holder / creator process in Layers"),
    )
    BINDINGS = [
        *(Binding(key, f"section('{sid}')", title, group=SECTION_KEYS) for sid, title, key in SECTIONS),
        Binding("r", "scan", "Scan"),
    ]
    COMPONENT_CLASSES = {"tmpfs--warn", "tmpfs--unknown", "tmpfs--dim", "tmpfs--title"}

    DEFAULT_CSS = """
    TmpfsTab { layout: vertical; }
    TmpfsTab #tmpfs-summary { height: auto; max-height: 3; text-wrap: nowrap; text-overflow: ellipsis; }
    TmpfsTab #tmpfs-sections { height: 2; }
    TmpfsTab ContentSwitcher { height: 1fr; }
    TmpfsTab DataTable { height: 1fr; }
    TmpfsTab #tmpfs-detail { height: 3; background: $panel; }
    TmpfsTab > .tmpfs--warn { color: $warning; text-style: bold; }
    TmpfsTab > .tmpfs--unknown { color: $text-muted; }
    TmpfsTab > .tmpfs--dim { color: $text-muted; }
    TmpfsTab > .tmpfs--title { text-style: bold; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.report: TmpfsReport | None = None
        self._report_result = None  # the PartResult it came from (when it was read)
        self.scans: dict[str, ScanResult] = {}
        self.scan_times: dict[str, float] = {}
        self.scanning: tuple[str, str, int, int] | None = None  # key, mountpoint, entries, files
        self.section = "mounts"
        self.files_order = "largest"
        self.live = True  # False in tests fed with fixed data: no automatic scans
        self.clock: Callable[[], float] = time.time
        self._drawn: tuple = ()
        self._scan_no = 0  # each scan asked of the Collector is a new request
        self._shown_rows: dict[str, tuple] = {}
        self._selected_mount: str | None = None
        self._columns_width: int | None = None

    # --- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="tmpfs-summary")
        yield Tabs(*(Tab(f"{title}", id=f"sec-{sid}") for sid, title, _ in SECTIONS), id="tmpfs-sections")
        with ContentSwitcher(initial="tbl-mounts"):
            for sid, _, _ in SECTIONS:
                table = DataTable(id=f"tbl-{sid}", cursor_type="row", zebra_stripes=False)
                yield table
        yield Static("", id="tmpfs-detail")

    def on_mount(self) -> None:
        self._fit_columns()
        self._render_all()

    def on_resize(self) -> None:
        if self._fit_columns():
            self._render_all()

    def _fit_columns(self) -> bool:
        """(Re)create the tables' columns so the flexible one takes the width left over.
        Returns True when they changed (the rows must then be added again)."""
        width = self.size.width or 80
        if width == self._columns_width:
            return False
        self._columns_width = width
        for sid, cols in COLUMNS.items():
            table = self._table(sid)
            fixed = sum((w or 0) + 2 for _, w in cols)
            table.clear(columns=True)
            for title, w in cols:
                table.add_column(Text(title), width=w if w is not None else max(14, width - fixed - 3), key=title)
            self._shown_rows.pop(sid, None)
        return True

    def _table(self, sid: str) -> DataTable:
        return self.query_one(f"#tbl-{sid}", DataTable)

    def on_show(self) -> None:
        # The section keys (m f d …) work while focus is inside the tab: start on its table.
        if self.app.active_tab() is self:
            self.call_after_refresh(self._table(self.section).focus)

    # --- samples -------------------------------------------------------------------------------
    PARTS = ("tmpfs", "tmpfs_scan")

    def show_sample(self, sample: Sample) -> None:
        report, scans = sample.result("tmpfs"), sample.result("tmpfs_scan")
        drawn = (report, scans)
        if drawn == self._drawn:
            return
        self._drawn = drawn
        if scans is not None:
            if scans.running and scans.progress is not None:
                self.scanning = scans.progress  # (mount key, mountpoint, entries, files)
            elif self.scanning is not None and not scans.running:
                self.scanning = None
                if scans.error:
                    self.notify(scans.error)
            if scans.value is not None:
                for key, (result, when) in scans.value.scans.items():
                    if self.scan_times.get(key) != when:
                        self.scans[key] = result
                        self.scan_times[key] = when
                        self._selected_mount = self._selected_mount or key
        if report is not None and report.value is not None and report.value is not self.report:
            self._report_result = report
            self.show_report(report.value)
            if self.live and self.section == "files":
                self._auto_scan()
        else:
            self._render_all()

    def show_report(self, report: TmpfsReport) -> None:
        """Show a collection pass (the Collector's, or fixed data in tests)."""
        first = self.report is None
        self.report = report
        self._render_all()
        if first and self.is_attached:
            self.app.refresh_bindings()  # r scans once there are mounts

    def show_scan(self, result: ScanResult, when: float | None = None) -> None:
        self.scans[result.mount_key] = result
        self.scan_times[result.mount_key] = self.clock() if when is None else when
        self._selected_mount = self._selected_mount or result.mount_key
        self._render_all()

    # --- sections ----------------------------------------------------------------------------
    def action_section(self, sid: str) -> None:
        self.query_one(Tabs).active = f"sec-{sid}"

    @on(Tabs.TabActivated, "#tmpfs-sections")
    def _section_activated(self, event: Tabs.TabActivated) -> None:
        sid = event.tab.id.removeprefix("sec-")
        self.section = sid
        self.query_one(ContentSwitcher).current = f"tbl-{sid}"
        self.app.refresh_bindings()  # s sorts the files section only
        if self.app.active_tab() is self:  # never take the focus from another tab (at start-up)
            self._table(sid).focus()
        if sid == "files" and self.live:
            self._auto_scan()
        self._render_all()

    def can_sort(self) -> bool:
        return self.section == "files"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "scan":  # r scans the selected mount's files: there must be one, live
            return not self.replaying and self.report is not None and bool(self.report.mounts)
        return super().check_action(action, parameters)

    def choose_sort(self) -> bool:
        if self.section != "files":
            return False
        from memtop.tui.screens import SortScreen

        def chosen(key: str | None) -> None:
            if key is not None:
                self.files_order = key
                self._render_all()

        self.app.push_screen(SortScreen([("largest", "largest (allocated bytes)"), ("oldest", "oldest (mtime)")],
                                        self.files_order), chosen)
        return True

    # --- the file scan ------------------------------------------------------------------------
    def _mount_by_key(self, key: str | None) -> Mount | None:
        if self.report is None or key is None:
            return None
        return next((m for m in self.report.mounts if m.key == key), None)

    def _selected_mount_obj(self) -> Mount | None:
        mount = self._mount_by_key(self._selected_mount)
        if mount is None and self.report is not None:
            # Default: the reachable memory-backed mount using the most.
            candidates = [m for m in self.report.mounts if m.covered_by is None and m.duplicate_of is None]
            if candidates:
                mount = max(candidates, key=lambda m: (m.used_bytes or 0, m.fstype == "tmpfs"))
                self._selected_mount = mount.key
        return mount

    def _auto_scan(self) -> None:
        mount = self._selected_mount_obj()
        if mount is not None and mount.key not in self.scans and self.scanning is None:
            self.action_scan()

    def action_scan(self) -> None:
        mount = self._selected_mount_obj()
        if mount is None:
            self.notify("no mount selected")
            return
        if mount.covered_by is not None:
            self.notify(f"{mount.mountpoint} (mount {mount.info.mount_id}) is covered by mount {mount.covered_by}: "
                        "its files cannot be reached", severity="warning")
            return
        self.scanning = (mount.key, mount.mountpoint, 0, 0)
        self._render_all()
        # The Collector's tmpfs_scan part walks it (memtop/collect/parts.py), with progress.
        self._scan_no += 1
        self.app.collector.set_params("tmpfs_scan", mount_key=mount.key, path=mount.access_path,
                                      mountpoint=mount.mountpoint, scan=self._scan_no)

    # --- selection ------------------------------------------------------------------------------
    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "tbl-mounts" and event.row_key.value is not None:
            self._selected_mount = event.row_key.value
        self._render_detail()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter: open the process behind the row (holder, creator) in Layers."""
        pid = self._row_pid(event.data_table.id.removeprefix("tbl-"), event.row_key.value)
        if pid is None:
            if event.data_table.id == "tbl-mounts":
                self.action_section("files")
            return
        snapshot = self.app.snapshot
        view = snapshot.by_pid(pid) if snapshot is not None else None
        if view is None:
            self.notify(f"PID {pid} is not in the process list (yet)")
            return
        self.app.select_process(view)
        self.app.action_open_layers()

    def _row_pid(self, sid: str, key: str | None) -> int | None:
        r = self.report
        if r is None or key is None:
            return None
        try:
            index = int(key.rsplit("#", 1)[-1])
        except ValueError:
            return None
        if sid == "deleted" and index < len(r.deleted_open):
            return r.deleted_open[index].holders[0].pid if r.deleted_open[index].holders else None
        if sid == "sysv" and index < len(r.sysv):
            s = r.sysv[index]
            return s.attached_pids[0] if s.attached_pids else s.cpid
        if sid == "posix" and index < len(r.posix):
            return r.posix[index].holders[0].pid if r.posix[index].holders else None
        if sid == "memfd":
            rows = self._memfd_rows()
            return rows[index][0] if index < len(rows) else None
        return None

    # --- drawing -------------------------------------------------------------------------------
    def _style(self, name: str):
        return self.get_component_rich_style(name)

    def _b(self, value) -> Text | str:
        text = fmt_bytes(value)
        return Text(text, style=self._style("tmpfs--unknown"), justify="right") if value is None else Text(text, justify="right")

    def _render_all(self) -> None:
        if not self.is_mounted:
            return
        self._render_summary()
        renderers = {
            "mounts": self._mounts_rows, "files": self._files_rows, "deleted": self._deleted_rows,
            "sysv": self._sysv_rows, "posix": self._posix_rows, "memfd": self._memfd_table_rows,
            "shmem": self._shmem_rows,
        }
        # Only the section on screen: the others are filled when shown (_section_activated).
        # Filling all seven at every pass rebuilt the SysV and POSIX tables at every read (their
        # ages tick), unseen: most of the tab's idle cost (issue 20 item 2).
        sid = self.section
        self._fill(sid, renderers[sid]() if self.report is not None or sid == "files" else [])
        self._render_detail()

    def _fill(self, sid: str, rows: list[tuple[str, tuple]]) -> None:
        """Show ``rows`` in a small table: nothing when they did not change, only the cells that
        changed when the rows are the same (an age that ticks), else the table rebuilt with the
        cursor kept on the same key."""
        signature = tuple((key, tuple(str(c) for c in cells)) for key, cells in rows)
        shown = self._shown_rows.get(sid)
        if shown == signature:
            return
        self._shown_rows[sid] = signature
        table = self._table(sid)
        if shown is not None and len(shown) == len(signature) == table.row_count and all(
                a[0] == b[0] and len(a[1]) == len(b[1]) for a, b in zip(shown, signature)):
            columns = list(table.columns)
            for (key, old), (_, new), (_, cells) in zip(shown, signature, rows):
                for column, before, after, cell in zip(columns, old, new, cells):
                    if before != after:
                        table.update_cell(key, column, self._cell(cell))
            return
        current = None
        if table.row_count and 0 <= table.cursor_row < table.row_count:
            current = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        table.clear()
        for key, cells in rows:
            table.add_row(*(self._cell(c) for c in cells), key=key)
        if current is not None:
            keys = [k for k, _ in rows]
            if current in keys:
                table.move_cursor(row=keys.index(current), animate=False)

    @staticmethod
    def _cell(value):
        # Plain strings would be read as Rich markup ("[anon_shmem:x]" would vanish).
        # printable: names, paths and mount points are other users'.
        return clip(Text(printable(value)) if isinstance(value, str) else value)

    def _render_summary(self) -> None:
        r = self.report
        summary = self.query_one("#tmpfs-summary", Static)
        if r is None:
            update_static(summary, Text(f" tmpfs: {NOT_RECORDED}" if self.replaying else " reading mounts, fd tables and maps …",
                                        style=self._style("tmpfs--dim")))
            return
        rec = r.reconciliation
        width = self.size.width or 120
        # The widest form that fits: full labels, then short ones, then without the 0 B parts
        # (named at the end when they fit), so that the sum's figures are never cut.
        for variant in ("long", "short", "nonzero", "bare"):
            line = self._summary_line(rec, variant)
            if line.cell_len <= width - 1:
                break
        else:
            # Still too wide: two lines, broken between parts (a figure keeps its label and unit).
            line = self._summary_line(rec, "bare", width - 1)
        if width >= 135:
            line.append("  (an estimate: c explains)", style=self._style("tmpfs--dim"))
        status = Text(" ", no_wrap=True, overflow="ellipsis")
        deleted = sum(d.allocated_bytes or 0 for d in r.deleted_open)
        orphans = [s for s in r.sysv if s.orphan]
        if r.deleted_open:
            status.append(f"{counted(len(r.deleted_open), 'deleted-but-open file')} keeping {fmt_bytes(deleted)}  ",
                          style=self._style("tmpfs--warn"))
        if orphans:
            status.append(f"{counted(len(orphans), 'orphan SysV segment')} holding {fmt_bytes(sum(s.rss_bytes or 0 for s in orphans))}  ",
                          style=self._style("tmpfs--warn"))
        if self.scanning is not None:
            _, mountpoint, entries, files = self.scanning
            status.append(f"scanning {printable(mountpoint)}: {fmt_count(entries)} entries, {fmt_count(files)} files …  ")
        spaced = self.spaced_note(self._report_result)
        status.append(f"{r.processes_seen} processes, {len(r.namespaces)} mount ns, smaps {r.smaps_read} read"
                      + (f"/{r.smaps_skipped} skipped" if r.smaps_skipped else "")
                      + (f"; {spaced}" if spaced else ""), style=self._style("tmpfs--dim"))
        update_static(summary, line + Text("\n") + status)

    def _summary_line(self, rec, variant: str, wrap_at: int | None = None) -> Text:
        """``Shmem X = tmpfs ≥A + SysV B + …``; ``variant``: long, short (labels), nonzero (the 0 B
        parts named after the sum), bare (0 B parts left out: the sum still adds up)."""
        short = variant != "long"
        line = Text(" Shmem ", style=self._style("tmpfs--title"), no_wrap=True, overflow="ellipsis")
        line.append(fmt_bytes(rec.shmem_bytes), style=self._style("tmpfs--title"))
        line.append(" =")
        zero = []
        shown = 0
        for part in rec.parts:
            label = {"tmpfs files": "tmpfs", "SysV segments": "SysV",
                     "shared anonymous": "anon" if short else "shared anon",
                     "not explained": "rest" if short else "unexplained"}.get(part.name, part.name)
            if variant in ("nonzero", "bare") and part.bytes == 0:
                zero.append(label)
                continue
            mark = "≥" if part.quality == "lower bound" else ""
            figure = mark + fmt_bytes(part.bytes)
            lead = f"{' +' if shown else ''} {label} "
            last_line = line.plain.rsplit("\n", 1)[-1]
            if wrap_at is not None and shown and len(last_line) + len(lead) + len(figure) > wrap_at:
                lead = f"\n       + {label} "
            line.append(lead)
            shown += 1
            line.append(figure, style=self._style("tmpfs--unknown") if part.bytes is None else "")
        if zero and variant == "nonzero":
            line.append(f"  ({', '.join(zero)}: 0 B)", style=self._style("tmpfs--dim"))
        return line

    def _mounts_rows(self):
        rows = []
        for m in self.report.mounts:
            if m.covered_by is not None:
                note = f"covered by mount {m.covered_by}"
            elif m.duplicate_of is not None:
                first = self._mount_by_key(m.duplicate_of)
                note = f"same fs as {first.mountpoint if first else m.duplicate_of}"
            else:
                note = m.usage_reason or ("not in Shmem" if not m.in_shmem else "")
            scan = self.scans.get(m.key)
            used = self._b(m.used_bytes)
            if m.used_bytes is None and scan is not None:
                used = Text("≈" + fmt_bytes(scan.total_allocated_bytes), justify="right")
                note = "used from the file scan"
            inodes = (f"{fmt_count(m.inodes_used)}/{fmt_count(m.inodes_total)}" if m.inodes_total is not None else "?")
            pct = m.used_fraction
            pct_text = Text(fmt_percent(pct), justify="right",
                            style=self._style("tmpfs--warn") if pct is not None and pct >= 0.8 else "")
            rows.append((m.key, (m.mountpoint, m.fstype, used, self._b(m.size_bytes), pct_text,
                                 Text(printable(note), style=self._style("tmpfs--dim")), inodes, _ns_text(m))))
        return rows

    def _files_rows(self):
        mount = self._selected_mount_obj()
        scan = self.scans.get(mount.key) if mount is not None else None
        if scan is None:
            return []
        files = scan.largest if self.files_order == "largest" else scan.oldest
        now = self.clock()
        return [(f"{scan.mount_key}#{i}", (f.path, self._b(f.allocated_bytes), self._b(f.size_bytes),
                                           Text(fmt_duration(max(0.0, now - f.mtime)), justify="right"), f.owner))
                for i, f in enumerate(files)]

    def _deleted_rows(self):
        return [(f"d#{i}", (d.path, self._b(d.allocated_bytes), self._b(d.size_bytes), holders_text(d.holders),
                            d.mountpoint or "?"))
                for i, d in enumerate(self.report.deleted_open)]

    def _sysv_rows(self):
        now = self.clock()
        rows = []
        for i, s in enumerate(self.report.sysv):
            if s.orphan:
                state = Text("ORPHAN: no process attached", style=self._style("tmpfs--warn"))
            elif s.marked_for_removal:
                state = Text(f"removed, freed at last detach; pids {', '.join(map(str, s.attached_pids)) or '?'}")
            else:
                state = Text(f"attached: {', '.join(map(str, s.attached_pids)) or '? (other namespace)'}")
            last = s.atime  # shm_atim: the last shmat(2)
            rows.append((f"s#{i}", (f"{s.key:#010x}" if s.key else "PRIVATE", str(s.shmid), self._b(s.size_bytes),
                                    self._b(s.rss_bytes), self._b(s.swap_bytes), str(s.nattch), s.owner or str(s.uid),
                                    str(s.cpid), f"{fmt_duration(max(0.0, now - last))} ago" if last else "never",
                                    state)))
        return rows

    def _posix_rows(self):
        now = self.clock()
        return [(f"p#{i}", (f.path.removeprefix("/dev/shm/"), self._b(f.allocated_bytes), self._b(f.size_bytes),
                            Text(fmt_duration(max(0.0, now - f.mtime)), justify="right"), f.owner,
                            holders_text(f.holders, 2)))
                for i, f in enumerate(self.report.posix)]

    def _memfd_rows(self) -> list[tuple]:
        """(pid, comm, kind, name, mapped, rss, pss, swap, object allocated) per process mapping,
        plus memfds held only through an fd."""
        r = self.report
        objects = {o.inode: o for o in r.objects}
        # One row per process and object: a process may map several parts of one memfd.
        merged: dict[tuple[int, int, str], list] = {}
        for m in r.mappings:
            row = merged.get((m.pid, m.inode, m.kind))
            if row is None:
                obj = objects.get(m.inode)
                merged[(m.pid, m.inode, m.kind)] = [m.pid, m.comm, "memfd" if m.kind == "memfd" else "anon", m.name,
                                                    m.vma_bytes, m.rss_bytes, m.pss_bytes, m.swap_bytes,
                                                    obj.allocated_bytes if obj else None]
                continue
            row[4] += m.vma_bytes
            for i, value in ((5, m.rss_bytes), (6, m.pss_bytes), (7, m.swap_bytes)):
                row[i] = None if row[i] is None or value is None else row[i] + value
        rows = sorted((tuple(row) for row in merged.values()), key=lambda row: (-(row[5] or 0), row[0]))
        mapped = {(m.pid, m.inode) for m in r.mappings}
        for o in r.objects:
            for h in o.holders:
                if h.fd is not None and (h.pid, o.inode) not in mapped:
                    rows.append((h.pid, h.comm, "memfd", f"{o.name} (fd {h.fd}, not mapped)", None, None, None, None,
                                 o.allocated_bytes))
        return rows

    def _memfd_table_rows(self):
        return [(f"e#{i}", (str(pid), comm, kind, name, self._b(vma), self._b(rss), self._b(pss), self._b(swap),
                            self._b(alloc)))
                for i, (pid, comm, kind, name, vma, rss, pss, swap, alloc) in enumerate(self._memfd_rows())]

    def _shmem_rows(self):
        rec = self.report.reconciliation
        rows = []
        for i, p in enumerate(rec.parts):
            share = p.bytes / rec.shmem_bytes if rec.shmem_bytes and p.bytes is not None else None
            rows.append((f"c#{i}", (p.name, self._b(p.bytes), fmt_percent(share), p.quality, p.note)))
        for i, p in enumerate(rec.outside_shmem):
            rows.append((f"o#{i}", (f"{p.name} (outside)", self._b(p.bytes), "", p.quality, p.note)))
        return rows

    def _render_detail(self) -> None:
        if not self.is_mounted:
            return
        detail = self.query_one("#tmpfs-detail", Static)
        update_static(detail, Text(self._detail_text()))  # every system string in it went through printable

    def _detail_text(self) -> str:
        r = self.report
        sid = self.section
        table = self._table(sid)
        key = None
        if table.row_count and 0 <= table.cursor_row < table.row_count:
            key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        if r is None:
            return " waiting for the first pass"
        if sid == "files":
            mount = self._selected_mount_obj()
            if mount is None:
                return " no memory-backed mount"
            scan = self.scans.get(mount.key)
            if scan is None:
                if self.scanning and self.scanning[0] == mount.key:
                    return f" scanning {printable(mount.mountpoint)} …"
                return f" {printable(mount.mountpoint)}: not scanned yet; r scans it (choose the mount in Mounts: m)"
            age = fmt_duration(self.clock() - self.scan_times.get(mount.key, self.clock()))
            text = (f" {printable(scan.mountpoint)}: {counted(scan.files, 'file')} in {counted(scan.directories, 'dir')}, "
                    f"{fmt_bytes(scan.total_allocated_bytes)} allocated of {fmt_bytes(scan.total_size_bytes)} size; "
                    f"scanned {age} ago; {'largest' if self.files_order == 'largest' else 'oldest'} "
                    f"{len(scan.largest)} shown (s: order, r: rescan)")
            extra = []
            if scan.truncated:
                extra.append(f"stopped at {fmt_count(scan.limit)} entries: totals are lower bounds")
            if scan.skipped_mounts:
                extra.append(f"{counted(scan.skipped_mounts, 'mount')} below not entered")
            if scan.errors:
                extra.append(f"{scan.errors} unreadable ({printable(scan.first_error)})")
            if mount.used_bytes is not None and not scan.truncated:
                hidden = mount.used_bytes - scan.total_allocated_bytes
                if hidden > 0:
                    # df (statvfs) counts what du (the scan) cannot see: deleted-but-open files,
                    # files under a mount covering a directory, directories' own blocks.
                    extra.append(f"df says {fmt_bytes(mount.used_bytes)} used, the files found hold "
                                 f"{fmt_bytes(scan.total_allocated_bytes)}: {fmt_bytes(hidden)} is elsewhere "
                                 "(deleted-but-open files: d)")
            return text + ("\n " + "; ".join(extra) if extra else "")
        index = None
        if key is not None and "#" in key:
            try:
                index = int(key.rsplit("#", 1)[1])
            except ValueError:
                index = None
        if sid == "mounts":
            m = self._mount_by_key(key)
            if m is None:
                return " no memory-backed mounts"
            return (f" {printable(m.mountpoint)}  {printable(m.fstype)} {printable(m.info.source)} dev {m.device}  mount {m.info.mount_id} in ns "
                    f"{m.namespace} ({_ns_text(m)})\n options {printable(m.info.super_options)}"
                    + (f"\n ? {printable(m.usage_reason)}" if m.usage_reason else "  Enter: its files"))
        if sid == "deleted":
            if not r.deleted_open:
                return " no deleted-but-open files on memory-backed mounts"
            d = r.deleted_open[index or 0]
            why = f"\n ? {printable(d.reason)}" if d.reason else ""
            return (f" {printable(d.path)} (deleted) inode {d.inode} on {printable(d.mountpoint)}: keeps {fmt_bytes(d.allocated_bytes)} "
                    f"until every holder closes/unmaps it\n holders: {holders_text(d.holders, 8)}{why}")
        if sid == "sysv":
            if not r.sysv:
                return " no SysV shared memory segments (/proc/sysvipc/shm is empty)"
            s = r.sysv[index or 0]
            hint = "  ipcrm -m {} removes it".format(s.shmid) if s.orphan else ""
            return (f" shmid {s.shmid} key {s.key:#x} perms {s.perms:o} created by PID {s.cpid}, last used by PID "
                    f"{s.lpid}; attached {s.nattch}{hint}")
        if sid == "posix":
            if not r.posix:
                return " /dev/shm holds no files"
            f = r.posix[index or 0]
            return f" {printable(f.path)}  holders: {holders_text(f.holders, 6)}"
        if sid == "memfd":
            rows = self._memfd_rows()
            if not rows:
                return " no memfd or shared anonymous mappings seen"
            pid, comm, kind, name, *_ = rows[index or 0]
            return (f" PID {pid} {printable(comm)}: {kind} {printable(name)}; Rss/Pss/Swap from smaps (bounded: {r.smaps_read} read, "
                    f"{r.smaps_skipped} skipped); OBJECT = the whole object's allocated bytes")
        if sid == "shmem":
            rec = r.reconciliation
            parts = list(rec.parts) + list(rec.outside_shmem)
            if key is not None and key.startswith("o#"):
                p = rec.outside_shmem[index or 0]
            else:
                p = parts[index or 0] if parts else None
            if p is None:
                return ""
            return f" {printable(p.name)}: {printable(p.source)}\n {printable(p.note)}\n " + printable(" ".join(rec.notes[1:]))
        return ""

"""Wording that must not mislead (issue 19): plurals, and numbers that say what they are."""

from memtop.model.pagecache import skipped_text


def test_skipped_entries_in_words():
    assert skipped_text({"symlink": 803}) == "803 symbolic links"
    assert skipped_text({"symlink": 1, "fifo": 1, "socket": 0}) == "1 FIFO, 1 symbolic link"
    assert skipped_text({"unreadable": 2, "vanished": 1, "pseudo-fs": 1, "loop": 3, "device": 2}) == (
        "2 devices, 3 directories seen twice, 1 pseudo-filesystem directory, 2 unreadable entries, "
        "1 entry gone meanwhile")
    assert skipped_text({"fifo": 0}) == ""
    assert skipped_text({"symlink": 12345}) == "12,345 symbolic links"

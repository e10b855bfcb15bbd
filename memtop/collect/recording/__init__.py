"""Reading a record file back (``memtop replay``): the recorded ticks are a source of samples,
like /proc is. The file's layout is described in memtop/output/record/__init__.py, which writes
it; the codec (fields by name, bounded and typed decoding) is shared by both and lives here."""

from memtop.collect.recording.codec import RecordDataError, RecordFileError
from memtop.collect.recording.reader import RecordedPressure, RecordedTick, RecordReader

__all__ = ["RecordDataError", "RecordFileError", "RecordReader", "RecordedPressure", "RecordedTick"]

"""Machine-readable outputs: JSON snapshot, Prometheus exporter, record/replay."""

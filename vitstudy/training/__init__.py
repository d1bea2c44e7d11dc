"""The training layer: the LightningModule (system), its step, one cell's run with its files, callbacks,
loggers, measured throughput and provenance. Knows nothing of grids."""

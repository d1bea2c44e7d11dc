"""Lightning without its chatter: its INFO log lines, and the warnings that a vitstudy cell triggers on
purpose (device-resident batches need no DataLoader workers, the EMA copy stays in eval mode, ...).
Importing this module imports nothing heavy, so a spawned worker can call `quiet_lightning` after
pinning its device and threads.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

EXPECTED_WARNINGS = (
    ".*does not have many workers.*",  # tensors are sliced in the main process: workers would only cost
    ".*smaller than the logging interval.*",
    ".*treespec, LeafSpec.*",
    ".*`srun` command is available.*",  # a local run on a machine with SLURM installed
    ".*exists and is not empty.*",  # the cell's lock file
    ".*module\\(s\\) in eval mode.*",  # the EMA, on purpose
    ".*litlogger.*",
)


def quiet_lightning() -> None:
    """Lightning's loggers at WARNING (its import sets them to INFO, so this imports it first)."""
    import lightning  # noqa: F401

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


def ignore_expected_warnings() -> None:
    """From now on, the warnings that a cell's Trainer raises by design are not shown."""
    for message in EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


@contextmanager
def expected_warnings_ignored():
    """Within the block, the warnings that a cell's Trainer raises by design are not shown."""
    with warnings.catch_warnings():
        ignore_expected_warnings()
        yield

"""What produced a result: library versions, the device, and the project's git commit.

Recorded in every metrics.json (`env`), so a number in a paper's table can be traced to the code and
the hardware that produced it, and results copied back from a cluster still say where they came from.
"""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from vitstudy import threads

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# set while a cell trains: Lightning re-runs our command line for DDP ranks > 0, which then join that cell
DDP_CELL_ENV = "VITSTUDY_DDP_CELL"


def git_state(root: Path = PROJECT_ROOT) -> dict:
    """{"commit": sha or None, "dirty": bool or None}: None where the code is not in a git checkout.
    Asked once per process (two git calls each metrics.json otherwise): its modules are the checkout
    as the process first imported them, whatever is committed while it trains."""
    return dict(_git_state(root))


@lru_cache(maxsize=None)
def _git_state(root: Path) -> dict:
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


@lru_cache(maxsize=None)
def _versions() -> dict:
    import lightning
    import timm
    import torch

    try:
        vitstudy_version = metadata.version("vitstudy")
    except metadata.PackageNotFoundError:
        vitstudy_version = None
    return {"vitstudy": vitstudy_version, "torch": torch.__version__, "lightning": lightning.__version__,
            "timm": timm.__version__, "python": platform.python_version()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_info(device_type: str, count: int = 1) -> dict:
    """The name and number of the devices a run used ("cuda": the GPU's name; "cpu": the processor)."""
    import torch

    if device_type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
    elif device_type == "mps":
        name = "Apple MPS"
    else:
        name = _cpu_name()  # count: processes (DDP on CPUs runs one per "device")
    cores = torch.get_num_threads() if device_type == "cpu" else None
    return {"device": device_type, "device_name": name, "device_count": count, "cpu_threads": cores}


def environment(device_type: str = "cpu", device_count: int = 1, precision: str | None = None,
                attention_path: str | None = None) -> dict:
    """The `env` section of a metrics.json record."""
    return {**_versions(), **device_info(device_type, device_count), "precision": precision,
            "attention_path": attention_path, "host": platform.node(), "threads": threads.summary(),
            **git_state()}

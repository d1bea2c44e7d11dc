"""How a training process's CPU threads wait and how many there are, decided before torch is imported.

PyTorch's CPU kernels run on an OpenMP thread pool (libgomp in the pip wheels). By default a thread
that runs out of work spins for a while (GOMP_SPINCOUNT) before it sleeps, waiting for the next
operation. On idle cores that saves a wake-up; on cores shared with another busy process it burns the
time slices the other threads of the pool need: every operation waits for a descheduled thread while
its siblings spin. Measured on 2 cores (`vitstudy bench contention`, the default grid's training step
in a 2-thread process): beside a 2-thread matmul process 5-9x its idle time, beside a stream of short
PyTorch commands 3-4x; with OMP_WAIT_POLICY=PASSIVE (sleep at once; libgomp and Intel's libiomp both
honour it) 1.0-1.35x and 0.9x, with one thread 1.5x and 1.05x. Shorter spins do not help: 10,000 spins
keep the idle speed and the 5-7x, 1,000 lose as much idle speed as PASSIVE. Sleeping has an idle cost
where waking a thread is slow (a virtual machine's idle vCPU): 1.3-2x for the default grid's model,
1.4x for ViT-Ti, in a 2-thread process on an idle machine; a one-thread process has nothing to wait
for, and the local executor trains a CPU grid's packs in one one-thread process per core.

The policy: OMP_WAIT_POLICY=PASSIVE in every process that trains, and OMP_NUM_THREADS where vitstudy
splits the cores (a spawned worker of the local executor; a SLURM or Ray task: its CPUs). `apply` sets
them in an environment, leaving alone every variable the user set (OMP_WAIT_POLICY=ACTIVE on a
dedicated machine buys the idle speed back): the ones it set are listed in VITSTUDY_THREADS, so a child
process tells them from the user's and may change them (a worker's thread split), while the user's stay
as they are. The variables are read once, when the OpenMP runtime loads with torch, so `apply` runs
first: in the `vitstudy` command's main(), in a spawned worker's initialiser, in the environment given
to SLURM jobs (sbatch setup lines) and Ray workers (runtime_env). `summary` goes into every run's
provenance (metrics.json env.threads).

This module imports no torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

MARK = "VITSTUDY_THREADS"  # the variables `apply` set, comma-separated (the others are the user's)
WAIT = {"OMP_WAIT_POLICY": "PASSIVE"}  # sleep at once when out of work: see the module doc
VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def ours(env: MutableMapping[str, str] | None = None) -> set[str]:
    """The variables of `env` that `apply` set (not the user)."""
    env = os.environ if env is None else env
    return {k for k in env.get(MARK, "").split(",") if k}


def users(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The thread variables the user set: they win over the policy."""
    env = os.environ if env is None else env
    mine = ours(env)
    return {k: env[k] for k in VARIABLES if k in env and k not in mine}


def apply(env: MutableMapping[str, str] | None = None, threads: int | None = None) -> dict[str, str]:
    """Set the policy in `env` (default: this process's environment): the wait policy, and with
    `threads` OMP_NUM_THREADS, each unless the user set it. Returns what it set."""
    env = os.environ if env is None else env
    wanted = dict(WAIT)
    if threads:
        wanted["OMP_NUM_THREADS"] = str(threads)
    mine, user = ours(env), users(env)
    done = {k: v for k, v in wanted.items() if k not in user}
    env.update(done)
    env[MARK] = ",".join(sorted(mine | set(done)))
    return done


def task_env(threads: int | None = None) -> dict[str, str]:
    """The thread variables for a task that starts elsewhere (a SLURM job, a Ray worker): the user's own,
    and the policy's (with `threads`) for the rest."""
    env = users()
    apply(env, threads)
    return env


def strip(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """`env` without the policy's variables (the user's stay): what a process gets without vitstudy."""
    for k in ours(env):
        env.pop(k, None)
    env.pop(MARK, None)
    return env


def summary(env: MutableMapping[str, str] | None = None) -> dict:
    """For a run's provenance: the thread variables in effect, which of them vitstudy set, and
    whether torch was loaded before them (then they did not reach this process's OpenMP runtime)."""
    env = os.environ if env is None else env
    return {"variables": {k: env[k] for k in VARIABLES if k in env}, "set_by_vitstudy": sorted(ours(env)),
            "torch_loaded_first": bool(_LATE)}


_LATE: bool | None = None  # None: apply_here was not called in this process


def apply_here(threads: int | None = None) -> dict[str, str]:
    """`apply` to this process's environment. Called before torch is imported; called after, it reaches
    only child processes (unless the policy was inherited), which `summary` records."""
    global _LATE
    if _LATE is None:
        _LATE = "torch" in sys.modules and any(k not in os.environ for k in WAIT)
    return apply(threads=threads)

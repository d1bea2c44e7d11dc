"""How a training process's CPU threads wait and how many there are, decided before torch is imported.

PyTorch's CPU kernels run on an OpenMP thread pool (libgomp in the pip wheels). By default a thread
that finishes its share of an operation spins for a while before sleeping, waiting for the next
one. On idle cores that saves a wake-up; on cores shared with another busy process it burns the
time slices the other threads of the pool need to finish: an operation waits for a descheduled
thread while its siblings spin. A cell beside a 2-thread matmul process on 2 cores took 2.9x its
idle time, and a grid beside a stream of short PyTorch commands 20-30x (fair shares: 2x and about
1.5x). Asking the pool to sleep at once (OMP_WAIT_POLICY=PASSIVE, honoured by libgomp and Intel's
libiomp alike) brings both to their fair share; `vitstudy bench contention` measures it.

`apply` sets the policy's variables in an environment, leaving alone every one the user set: the
variables it set are listed in VITSTUDY_THREADS, so a child process (a spawned worker, a SLURM or
Ray task) tells them from the user's and may change them (the local executor splits the threads
between its workers), while the user's stay as they are. The variables are read once, when the
OpenMP runtime loads with torch, so `apply` must run first: in the `vitstudy` command's main(), in
a spawned worker's initialiser, in the environment given to SLURM and Ray tasks.

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

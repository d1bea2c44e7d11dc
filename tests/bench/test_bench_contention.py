"""The thread policy (vitstudy.threads) reaches every process that trains, the user's own variables win
over it, and `vitstudy bench contention` reports ratios that follow from the step times it records (no
timings asserted: machines are noisy)."""

import json
import os
import statistics
import subprocess
import sys

from vitstudy import threads
from vitstudy.bench import run_parts
from vitstudy.bench.contention import CONDITIONS, TARGETS, format_contention
from vitstudy.config.manifest import load

GRID = """
name: one
defaults:
  model: {preset: vit_micro, embed_dim: 16, depth: 1, num_heads: 2, head: gap}
  data: {dataset: digits, batch_size: 256}
  train: {epochs: 1, lr: 3.0e-3, warmup_epochs: 0, accelerator: cpu}
  log: {progress_bar: false}
grid:
  model.head: [cls, gap]
seeds: [0]
"""


def clean_env(**user: str) -> dict[str, str]:
    """This environment without any thread variable, plus the user's `user` ones."""
    env = {k: v for k, v in os.environ.items() if k not in (*threads.VARIABLES, threads.MARK)}
    return {**env, **user}


def test_apply_sets_the_wait_policy_and_leaves_the_users_variables_alone():
    env = {"PATH": "/bin"}
    assert threads.apply(env) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert env == {"PATH": "/bin", "OMP_WAIT_POLICY": "PASSIVE", threads.MARK: "OMP_WAIT_POLICY"}
    # a child (a spawned worker) may change what vitstudy set: the split of the threads
    assert threads.apply(env, threads=3) == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "3"}
    assert threads.apply(env, threads=1) == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    assert env["OMP_NUM_THREADS"] == "1" and threads.users(env) == {}
    # the user's variables win, in the parent and in every child
    user = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "5"}
    env = dict(user)
    assert threads.apply(env, threads=2) == {} and threads.apply(env, threads=1) == {}
    assert threads.users(env) == user and {k: env[k] for k in user} == user
    # strip: what a process gets without vitstudy (the user's variables stay)
    env = {"OMP_NUM_THREADS": "5"}
    threads.apply(env)
    assert threads.strip(env) == {"OMP_NUM_THREADS": "5"}


def test_slurm_and_ray_tasks_get_the_policy_and_the_users_variables(monkeypatch):
    for k in (*threads.VARIABLES, threads.MARK):  # set, then removed: monkeypatch restores them afterwards
        monkeypatch.setenv(k, "")
        monkeypatch.delenv(k)
    assert threads.task_env(4) == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "4",
                                   threads.MARK: "OMP_NUM_THREADS,OMP_WAIT_POLICY"}
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's, as tests/grid/test_cluster.py sets it
    assert threads.task_env(4) == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1",
                                   threads.MARK: "OMP_WAIT_POLICY"}
    threads.apply_here()  # as `vitstudy run-grid` does before it submits: still the user's 1 thread
    assert threads.task_env(4)["OMP_NUM_THREADS"] == "1"


def _run_grid(tmp_path, env: dict[str, str], workers: int) -> list[dict]:
    """The `env` records of `vitstudy run-grid` (in a process of its own) with `workers`: one cell for
    one worker (trained in the command's process), two for two (in spawned workers)."""
    manifest = tmp_path / f"grid{workers}.yaml"
    manifest.write_text(GRID if workers > 1 else GRID.replace("[cls, gap]", "[gap]"))
    out = tmp_path / f"results-{workers}-{len(env)}"
    proc = subprocess.run([sys.executable, "-m", "vitstudy.cli", "run-grid", str(manifest), "--out", str(out),
                           "--workers", str(workers)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    grid = load(manifest)
    return [json.loads((grid.cell_dir(out, c) / "metrics.json").read_text())["env"] for c in grid.cells]


def test_the_entry_point_and_spawned_workers_train_under_the_policy(tmp_path):
    """Set before torch loaded (torch_loaded_first False): OMP_NUM_THREADS reached the OpenMP runtime,
    as the cell's own torch.get_num_threads() shows."""
    for env in _run_grid(tmp_path, clean_env(), workers=1):  # `vitstudy` trains in its own process
        assert env["threads"] == {"variables": {"OMP_WAIT_POLICY": "PASSIVE"},
                                  "set_by_vitstudy": ["OMP_WAIT_POLICY"], "torch_loaded_first": False}
    split = max(1, (os.cpu_count() or 1) // 2)
    for env in _run_grid(tmp_path, clean_env(), workers=2):  # spawned workers split the threads
        assert env["threads"] == {"variables": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(split)},
                                  "set_by_vitstudy": ["OMP_NUM_THREADS", "OMP_WAIT_POLICY"],
                                  "torch_loaded_first": False}
        assert env["cpu_threads"] == split


def test_the_users_thread_variables_win_in_spawned_workers(tmp_path):
    user = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"}  # 1: torch's default is the cores
    envs = _run_grid(tmp_path, clean_env(**user), workers=2)
    assert len(envs) == 2
    for env in envs:
        assert env["threads"] == {"variables": user, "set_by_vitstudy": [], "torch_loaded_first": False}
        assert env["cpu_threads"] == 1


def test_contention_part_reports_ratios_that_follow_from_its_step_times(write_manifest, tmp_path, capsys):
    results = run_parts(["contention"], precisions=["fp32"], rounds=2, only=None,
                        manifest=write_manifest(GRID), device="cpu", out=tmp_path / "bench", seconds=0.1)
    result = json.loads((tmp_path / "bench" / "contention.json").read_text())
    assert result == json.loads(json.dumps(results["contention"]))
    assert capsys.readouterr().out == format_contention(result) + "\n"
    policy = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    assert result["configs"] == {"policy": {k: v for k, v in policy.items() if k == "OMP_WAIT_POLICY" and k not in threads.users()},
                                 "policy_1thread": {k: v for k, v in policy.items() if k not in threads.users()},
                                 "default": {}}
    if "OMP_NUM_THREADS" not in threads.users():
        assert result["threads"]["policy_1thread"] == 1  # it reached the stepper's torch
    for name in result["configs"]:
        times = result["step_s"][name]
        assert set(times) == set(CONDITIONS) and all(len(v) == 2 and min(v) > 0 for v in times.values())
        idle = statistics.median(times["idle"])
        assert result["median_step_ms"][name]["idle"] == 1000 * idle
        for condition, target in TARGETS.items():
            ratio = statistics.median(times[condition]) / idle
            assert result["ratio"][name][condition] == ratio
            assert result["meets"][name][condition] == (ratio <= target)
        assert result["idle_vs_default"][name] == idle / statistics.median(result["step_s"]["default"]["idle"])
    # the competitors ran: the matmul process used CPU time, short processes were started
    assert all(r["cpu_s"] > 0 and r["processes"] == 1 for r in result["competitor"]["matmul"])
    assert all(r["processes"] >= 1 for r in result["competitor"]["stream"])
    assert all(r["cpu_s"] == 0 and r["processes"] == 0 for r in result["competitor"]["idle"])


def test_the_modules_that_apply_the_policy_load_no_torch():
    """Else the OpenMP runtime would load before the policy is set (torch_loaded_first in the records)."""
    code = ("import sys, vitstudy.threads, vitstudy.cli, vitstudy.grid.executors.worker; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

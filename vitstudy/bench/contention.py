"""`vitstudy bench contention`: how much a training process slows when other processes share its cores,
with vitstudy's thread policy (vitstudy.threads) and without it.

The workload is a cell's: the training step (vitstudy.training.step.train_step) of the first cell of a
manifest (the default grid's model and batch), in a process of its own for each thread setting, so that
the OpenMP runtime loads with that setting's environment: "policy" (what `vitstudy` sets in its own
process), "policy_1thread" (what a spawned worker gets when `run-grid` trains one process per core),
"default" (what a process gets without vitstudy; the user's own variables stay in all). Each is timed,
in rounds, in three conditions:

    idle      nothing else runs
    matmul    beside a second process multiplying 1000×1000 matrices on 2 threads, without pause
    stream    beside short PyTorch commands (import torch, one matmul) started back to back

Both competitors get the environment of an ordinary process (no vitstudy policy). A round starts a
condition's competitor, times every setting in it (order rotated from round to round), stops it; the
conditions' order rotates too. A measurement is a fixed number of steps (about `seconds` at idle;
fewer when it passes LIMIT × `seconds`, so that a 20-30x slowdown does not take minutes);
figures are medians over rounds, and a ratio is a setting's median beside a competitor over its own
median at idle. The issue's targets: at most 2x beside the matmul process (its fair share of 2 cores),
at most 3x beside the stream. `competitor` records the CPU seconds the competitors used during each
condition (and how many short processes ran), so a ratio near 1 cannot come from a competitor that
never ran.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from vitstudy import threads

CONDITIONS = ("idle", "matmul", "stream")
TARGETS = {"matmul": 2.0, "stream": 3.0}  # at most this many times the idle time
MATMUL = ("import torch\ntorch.set_num_threads(2)\na = torch.randn(1000, 1000)\na @ a\n"
          "print('ready', flush=True)\nwhile True:\n    a @ a\n")
LIMIT = 10  # a measurement ends after LIMIT × seconds, its steps so far timed (a 20-30x slowdown stays short)
SHORT = "import torch; torch.ones(1000, 1000) @ torch.ones(1000, 1000)"
ROOT = Path(__file__).resolve().parent.parent.parent  # so that child processes import this vitstudy


def _rotate(items: list, r: int) -> list:
    return items[r % len(items):] + items[: r % len(items)]


class _Stepper:
    """A process training the cell's model, one step at a time: `run(n)` times n steps in it."""

    def __init__(self, job: dict, env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, "-m", "vitstudy.bench.contention", json.dumps(job)],
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info: dict = {}

    def ready(self) -> None:
        """Wait for its first report: model, batch and three warm-up steps done."""
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the stepper process ended (exit status {self.proc.wait()})")
        return json.loads(line)

    def run(self, steps: int, limit_s: float) -> dict:
        """Time `steps` steps, or as many as end within `limit_s` seconds (at least one)."""
        self.proc.stdin.write(f"{steps} {limit_s}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # of the children that ended and were waited for
    return r.ru_utime + r.ru_stime


@contextmanager
def _competitor(condition: str, env: dict[str, str]):
    """Run the condition's competitor for the duration of the block; yields its record (CPU seconds and
    processes, filled in when the block ends)."""
    record = {"cpu_s": 0.0, "processes": 0}
    cpu = _children_cpu()
    if condition == "idle":
        yield record
    elif condition == "matmul":
        proc = subprocess.Popen([sys.executable, "-c", MATMUL], env=env, stdout=subprocess.PIPE, text=True)
        try:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the matmul process ended (exit status {proc.wait()})")
            yield record
        finally:
            proc.kill()
            proc.wait()
        record["processes"] = 1
    elif condition == "stream":
        stop, current = threading.Event(), []

        def loop() -> None:
            while not stop.is_set():
                current[:] = [subprocess.Popen([sys.executable, "-c", SHORT], env=env)]
                current[0].wait()
                record["processes"] += 1

        worker = threading.Thread(target=loop, daemon=True)
        worker.start()
        try:
            yield record
        finally:
            stop.set()
            if current:
                current[0].kill()
            worker.join()
    else:
        raise ValueError(f"unknown condition {condition!r}; conditions: {', '.join(CONDITIONS)}")
    record["cpu_s"] = _children_cpu() - cpu


def default_configs() -> dict[str, dict[str, str]]:
    """name -> the variables it adds to an ordinary process's environment (less what the user set):
    vitstudy's policy as `vitstudy` applies it to itself (one process, torch's thread count), as a
    spawned worker of `run-grid` gets it on a CPU with a worker per core (one thread), and nothing
    (the default without vitstudy)."""
    return {"policy": threads.apply(threads.strip(dict(os.environ))),
            "policy_1thread": threads.apply(threads.strip(dict(os.environ)), threads=1), "default": {}}


def bench_contention(manifest: str | Path = "experiments.yaml", rounds: int = 3, seconds: float = 2.0,
                     configs: dict[str, dict[str, str]] | None = None) -> dict:
    """Step times of the first cell of `manifest` idle, beside a matmul process and beside a stream of
    short processes, per thread setting in `configs` (default: policy and default); see the module doc."""
    from vitstudy.config import manifest as manifests
    from vitstudy.models.cost import model_cost

    cell = manifests.load(manifest, cost=model_cost).cells[0]
    job = {"model": cell.spec.model.model_dump(mode="json"), "batch_size": cell.spec.data.batch_size}
    base = threads.strip(dict(os.environ))  # an ordinary process's environment: the user's variables only
    base["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH")) if p)
    configs = default_configs() if configs is None else configs
    names = list(configs)
    steppers: dict[str, _Stepper] = {}
    try:
        for name in names:  # started together, then waited for
            steppers[name] = _Stepper(job, {**base, **configs[name]})
        for s in steppers.values():
            s.ready()
        # steps per measurement: about `seconds` at idle, from a first timed batch of steps
        steps = {}
        for name, s in steppers.items():
            probe = s.run(max(1, round(0.25 * seconds / s.info["step_s"])), seconds)
            steps[name] = max(1, round(seconds * probe["steps"] / probe["wall_s"]))
        times = {n: {c: [] for c in CONDITIONS} for n in names}
        cpu = {n: {c: [] for c in CONDITIONS} for n in names}
        competitor: dict[str, list[dict]] = {c: [] for c in CONDITIONS}
        for r in range(rounds):
            for condition in _rotate(list(CONDITIONS), r):
                with _competitor(condition, base) as record:
                    for name in _rotate(names, r):
                        m = steppers[name].run(steps[name], LIMIT * seconds)
                        times[name][condition].append(m["wall_s"] / m["steps"])
                        cpu[name][condition].append(m["cpu_s"] / m["wall_s"])
                competitor[condition].append(record)
    finally:
        for s in steppers.values():
            s.close()
    step_s = {n: {c: statistics.median(v) for c, v in t.items()} for n, t in times.items()}
    ratio = {n: {c: s[c] / s["idle"] for c in TARGETS} for n, s in step_s.items()}
    result = {"manifest": str(manifest), "cell": cell.run_id, "batch_size": job["batch_size"],
              "rounds": rounds, "seconds": seconds, "cpus": os.cpu_count(),
              "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
              "user_env": threads.users(), "configs": configs,
              "threads": {n: s.info["threads"] for n, s in steppers.items()}, "steps": steps,
              "targets": TARGETS, "step_s": times, "cpu_per_wall": cpu, "competitor": competitor,
              "median_step_ms": {n: {c: 1000 * v for c, v in s.items()} for n, s in step_s.items()},
              "ratio": ratio,
              "meets": {n: {c: r <= TARGETS[c] for c, r in rs.items()} for n, rs in ratio.items()}}
    if "default" in step_s:
        result["idle_vs_default"] = {n: s["idle"] / step_s["default"]["idle"] for n, s in step_s.items()}
    return result


def format_contention(result: dict) -> str:
    t = result["targets"]
    lines = [f"A cell's training step beside other processes: {result['cell']} ({result['manifest']}), batch "
             f"{result['batch_size']}, {result['cpus']} CPUs; medians over {result['rounds']} rounds of "
             f"~{result['seconds']:g} s; targets: ≤{t['matmul']:g}x beside a 2-thread matmul process, "
             f"≤{t['stream']:g}x beside a stream of short PyTorch processes", "",
             "| threads | variables | ms/step idle | beside matmul | beside stream | idle vs default | "
             "CPU/wall idle |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, extra in result["configs"].items():
        ms, r = result["median_step_ms"][name], result["ratio"][name]
        env = " ".join(f"{k}={v}" for k, v in extra.items()) or "(none)"
        ok = {c: "" if result["meets"][name][c] else " ✗" for c in r}
        vs = result.get("idle_vs_default", {}).get(name)
        busy = statistics.median(result["cpu_per_wall"][name]["idle"])
        lines.append(f"| {name} ({result['threads'][name]}) | {env} | {ms['idle']:.2f} | {r['matmul']:.2f}x"
                     f"{ok['matmul']} | {r['stream']:.2f}x{ok['stream']} | "
                     + (f"{vs:.2f}x" if vs is not None else "–") + f" | {busy:.2f} |")
    n = [rec["processes"] for rec in result["competitor"]["stream"]]
    lines += ["", "competitors' CPU seconds per round: matmul "
              + ", ".join(f"{rec['cpu_s']:.1f}" for rec in result["competitor"]["matmul"])
              + "; stream " + ", ".join(f"{rec['cpu_s']:.1f}" for rec in result["competitor"]["stream"])
              + f" ({sum(n)} short processes)"]
    if result["user_env"]:
        lines.append("your own thread variables (in every setting): "
                     + " ".join(f"{k}={v}" for k, v in result["user_env"].items()))
    return "\n".join(lines) + "\n"


def _serve(arg: str) -> None:
    """The stepper process: build the model and batch, take three warm-up steps, report; then for every
    line "n limit_s" on stdin take n steps (fewer when limit_s runs out) and report their number, wall and
    CPU seconds."""
    import torch

    from vitstudy.bench.common import random_batch, train_step
    from vitstudy.config.spec import ModelSpec
    from vitstudy.models.build import build_model

    job = json.loads(arg)
    spec = ModelSpec.model_validate(job["model"])
    torch.manual_seed(0)
    step = train_step(build_model(spec), *random_batch(spec, job["batch_size"], torch.device("cpu")), "fp32")
    for _ in range(2):
        step()
    start = time.perf_counter()
    step()
    print(json.dumps({"threads": torch.get_num_threads(), "step_s": time.perf_counter() - start}), flush=True)
    for line in sys.stdin:
        n, limit = line.split()
        wall, cpu, done = time.perf_counter(), time.process_time(), 0
        while done < int(n) and (done == 0 or time.perf_counter() - wall < float(limit)):
            step()
            done += 1
        print(json.dumps({"steps": done, "wall_s": time.perf_counter() - wall,
                          "cpu_s": time.process_time() - cpu}), flush=True)


if __name__ == "__main__":
    _serve(sys.argv[1])

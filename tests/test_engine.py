"""The grid engine: expansion properties, errors that teach (exit 2), resume after SIGKILL, failures,
divergence, --retry-failed / --fail-fast, per-cell locks between concurrent processes, workers, plan."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_GRID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_manifest import BAD

from vitstudy.cli import main
from vitstudy.locks import CellLock
from vitstudy.manifest import Cell, ManifestError, load, parse

ROOT = Path(__file__).resolve().parents[1]
HEAD = "defaults:\n  model: {preset: vit_micro}\n  data: {dataset: digits}\n"


# --- expansion properties ------------------------------------------------------------------------
AXES = {  # dotted key -> strategy for a list of distinct valid values
    "model.head": st.lists(st.sampled_from(["cls", "gap"]), min_size=1, max_size=2, unique=True),
    "model.position": st.lists(st.sampled_from(["learned", "none", "sinusoid"]), min_size=1, max_size=3,
                               unique=True),
    "data.batch_size": st.lists(st.integers(1, 512), min_size=1, max_size=3, unique=True),
    "train.epochs": st.lists(st.integers(1, 100), min_size=1, max_size=3, unique=True),
    "train.lr": st.lists(st.sampled_from([1e-4, 3e-4, 1e-3, 3e-3, 0.01]), min_size=1, max_size=3, unique=True),
}
BASE = {"name": "p", "defaults": {"model": {"preset": "vit_micro"}, "data": {"dataset": "digits"}}}


@st.composite
def grids(draw):
    keys = draw(st.lists(st.sampled_from(sorted(AXES)), min_size=1, max_size=4, unique=True))
    axes = {k: draw(AXES[k]) for k in keys}
    seeds = draw(st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True))
    return axes, seeds


def _dump(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def _values(cell: Cell) -> tuple:
    spec = cell.spec.model_dump(mode="json")
    return tuple(spec[k.split(".")[0]][k.split(".")[1]] for k in sorted(AXES)) + (cell.spec.seed,)


FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(grids())
def test_product_count_and_unique_ids(g):
    axes, seeds = g
    grid = parse(_dump({**BASE, "grid": axes, "seeds": seeds}))
    assert len(grid.cells) == math.prod(len(v) for v in axes.values()) * len(seeds)
    assert len({c.run_id for c in grid.cells}) == len(grid.cells)
    assert len({c.spec.digest() for c in grid.cells}) == len(grid.cells)


@FAST
@given(grids(), st.integers(1, 4), st.randoms(use_true_random=False))
def test_zip_varies_keys_together(g, n, rnd):
    axes, seeds = g
    widths = [16, 32, 48, 64][:n]
    zipped = {"model.embed_dim": widths, "model.num_heads": [w // 16 for w in widths]}
    grid = parse(_dump({**BASE, "grid": {**axes, "zip": zipped}, "seeds": seeds}))
    assert len(grid.cells) == math.prod(len(v) for v in axes.values()) * n * len(seeds)
    assert {(c.spec.model.embed_dim, c.spec.model.num_heads) for c in grid.cells} == \
        {(w, w // 16) for w in widths}


@FAST
@given(grids(), grids())
def test_union_of_subgrids_counts_distinct_cells(a, b):
    (axes_a, seeds), (axes_b, _) = a, b
    union = parse(_dump({**BASE, "grid": [axes_a, axes_b], "seeds": seeds}))
    parts = [parse(_dump({**BASE, "grid": ax, "seeds": seeds})) for ax in (axes_a, axes_b)]
    expected = {_values(c) for p in parts for c in p.cells}
    assert len(union.cells) == len(expected)  # duplicates collapse to one
    assert {_values(c) for c in union.cells} == expected
    assert len({c.run_id for c in union.cells}) == len(union.cells)


@FAST
@given(grids(), st.randoms(use_true_random=False))
def test_ids_do_not_depend_on_key_order(g, rnd):
    axes, seeds = g
    keys = list(axes)
    rnd.shuffle(keys)
    defaults = dict(reversed(list(BASE["defaults"].items())))
    a = parse(_dump({**BASE, "grid": axes, "seeds": seeds}))
    b = parse(_dump({"seeds": seeds, "grid": {k: axes[k] for k in keys}, "defaults": defaults, "name": "p"}))
    by_values = {_values(c): c.spec.digest() for c in a.cells}
    assert by_values == {_values(c): c.spec.digest() for c in b.cells}


@FAST
@given(grids(), st.sampled_from(["train.weight_decay", "train.label_smoothing", "model.drop_path",
                                 "data.shift", "train.min_lr"]))
def test_a_semantic_change_changes_every_id_a_cosmetic_one_none(g, key):
    axes, seeds = g
    doc = {**BASE, "grid": axes, "seeds": seeds}
    ids = [c.run_id for c in parse(_dump(doc)).cells]
    section, fld = key.split(".")
    changed = {**doc, "defaults": {**doc["defaults"], section: {**doc["defaults"].get(section, {}), fld: 0.2
                                                                  if fld != "shift" else 2}}}
    new = [c.run_id for c in parse(_dump(changed)).cells]
    assert not set(ids) & set(new)
    cosmetic = {**doc, "name": "other", "defaults": {**doc["defaults"], "log": {"every_n_steps": 7}}}
    assert [c.run_id for c in parse(_dump(cosmetic)).cells] == ids


def test_ids_are_stable_across_processes():
    text = _dump({**BASE, "grid": {"model.head": ["cls", "gap"], "train.lr": [1e-3, 3e-3]}, "seeds": [0, 1]})
    here = [c.run_id for c in parse(text).cells]
    code = "import sys; from vitstudy.manifest import parse; print(*[c.run_id for c in parse(sys.stdin.read()).cells])"
    for hashseed in ("1", "12345"):
        out = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": hashseed}).stdout.split()
        assert out == here


def test_existing_manifest_ids_are_unchanged():
    from test_manifest import BASE as FOUNDATION

    # as printed by the foundation's manifest.py, before zip, sub-grids, exclude, expect and smoke
    ids = [c.run_id for c in parse(FOUNDATION).cells]
    assert ids[:3] == ["head-cls_position-learned_s0-8943eb79", "head-cls_position-learned_s1-f0ea2e2f",
                       "head-cls_position-sinusoid_s0-5d3693dd"]


# --- exclude, expect, smoke, include --------------------------------------------------------------
FEATURES = HEAD + """grid:
  - model.head: [cls, gap]
    model.position: [learned, none]
  - model.head: [gap]
    zip: {model.embed_dim: [32, 64], model.num_heads: [2, 4]}
exclude:
  - {model.head: cls, model.position: none}
expect:
  - match: {model.head: gap}
    test/acc1: 99.0
    source: "made up for the test"
  - match: {model.head: gap, model.position: none}
    test/acc1: 92.5
    params: 1.2e5
smoke:
  train: {epochs: 1}
  data: {train_subset: 64}
  seeds: [0]
seeds: [0, 1]
"""


def test_exclude_union_and_duplicates_collapse():
    grid = parse(FEATURES, "f.yaml")
    combos = [(c.spec.model.head, c.spec.model.position, c.spec.model.embed_dim, c.spec.seed) for c in grid.cells]
    # 4 head×position minus 1 excluded, + 2 zipped widths of which 64 (the preset's) equals (gap, learned)
    assert len(combos) == len(set(combos)) == (3 + 1) * 2
    assert ("cls", "none", 64, 0) not in combos
    assert ("gap", "learned", 32, 0) in combos


def test_expect_attaches_plain_dicts_later_rules_win():
    grid = parse(FEATURES, "f.yaml")
    by = {(c.spec.model.head, c.spec.model.position, c.spec.model.embed_dim): c for c in grid.cells}
    assert by[("gap", "none", 64)].expect == {"test/acc1": 92.5, "params": 1.2e5}
    assert by[("gap", "learned", 64)].expect == {"test/acc1": 99.0}
    assert by[("gap", "learned", 64)].expect_source == "made up for the test"
    assert by[("cls", "learned", 64)].expect == {} and by[("cls", "learned", 64)].expect_source is None


def test_smoke_overrides_apply_before_hashing():
    full, smoke = parse(FEATURES, "f.yaml"), parse(FEATURES, "f.yaml", smoke=True)
    assert len(smoke.cells) == len(full.cells) // 2  # smoke seeds: [0]
    assert {c.spec.train.epochs for c in smoke.cells} == {1}
    assert {c.spec.data.train_subset for c in smoke.cells} == {64}
    assert not {c.run_id for c in smoke.cells} & {c.run_id for c in full.cells}
    assert smoke.folder == "f-smoke" and full.folder == "f" and smoke.cells[0].grid == "f-smoke"
    # expect rules match the spec without the smoke overrides: smoke cells keep the paper's numbers
    assert sorted(c.expect.get("test/acc1", 0) for c in smoke.cells) == \
        sorted(c.expect.get("test/acc1", 0) for c in full.cells if c.spec.seed == 0)


def test_include_keeps_each_manifests_folder(tmp_path):
    (tmp_path / "ablations").mkdir()
    (tmp_path / "ablations" / "heads.yaml").write_text("name: heads\n" + HEAD + "grid:\n  model.head: [cls, gap]\n")
    (tmp_path / "ablations" / "pos.yaml").write_text("name: pos\n" + HEAD + "grid:\n  model.position: [none]\n")
    (tmp_path / "all.yaml").write_text("name: all\ninclude: ablations/*.yaml\n")
    grid = load(tmp_path / "all.yaml")
    assert [c.grid for c in grid.cells] == ["heads", "heads", "pos"]
    assert grid.cell_dir(tmp_path / "out", grid.cells[2]) == tmp_path / "out" / "pos" / grid.cells[2].run_id
    alone = load(tmp_path / "ablations" / "heads.yaml")
    assert [c.run_id for c in alone.cells] == [c.run_id for c in grid.cells[:2]]  # shared results


def test_results_never_escape_the_root(tmp_path):
    cell = parse(TINY_GRID).cells[0]
    grid = parse(TINY_GRID)
    evil = Cell(cell.spec, "../../etc", cell.axes)
    with pytest.raises(ValueError, match="escapes"):
        grid.cell_dir(tmp_path, evil)
    assert grid.cell_dir(tmp_path, cell).parent.parent == tmp_path


# --- errors that teach: exit 2, the key, what is valid, no traceback, nothing written -------------
BAD_ENGINE = {  # name: (manifest text, key named, hint, extra files, extra CLI flags)
    "zip unequal lengths": (HEAD + "grid:\n  zip: {model.embed_dim: [32, 64], model.num_heads: [2]}\n",
                            "grid.zip", "differ in length", {}, []),
    "zip unknown key": (HEAD + "grid:\n  zip: {model.embed_dmi: [32]}\n", "grid.zip.model.embed_dmi",
                        "did you mean 'embed_dim'", {}, []),
    "zip not a mapping": (HEAD + "grid:\n  zip: [1, 2]\n", "grid.zip[0]", "zip is a mapping", {}, []),
    "key on two axes": (HEAD + "grid:\n  model.head: [cls]\n  zip: {model.head: [gap]}\n", "grid.zip.model.head",
                        "already an axis", {}, []),
    "sub-grid not a mapping": (HEAD + "grid:\n  - {model.head: [cls]}\n  - 3\n", "grid[1]", "a grid is a mapping",
                               {}, []),
    "typo in a sub-grid": (HEAD + "grid:\n  - {model.head: [cls]}\n  - {model.head: [gapp]}\n",
                           "grid[1].model.head[0]", "did you mean 'gap'", {}, []),
    "empty list of sub-grids": (HEAD + "grid: []\n", "grid", "empty list of sub-grids", {}, []),
    "exclude not a list": (HEAD + "exclude: {model.head: cls}\n", "exclude", "list of rules", {}, []),
    "exclude unknown key": (HEAD + "grid:\n  model.head: [cls, gap]\nexclude:\n  - {model.haed: cls}\n",
                            "exclude[0].model.haed", "did you mean 'head'", {}, []),
    "exclude matches nothing": (HEAD + "grid:\n  model.head: [cls, gap]\nexclude:\n  - {model.head: gapp}\n",
                                "exclude[0]", "matches no cell", {}, []),
    "exclude empty rule": (HEAD + "exclude:\n  - {}\n", "exclude[0]", "a rule is a mapping", {}, []),
    "everything excluded": (HEAD + "grid:\n  model.head: [cls]\nexclude:\n  - {model.head: cls}\n", "grid",
                            "no cells", {}, []),
    "expect not a number": (HEAD + "expect:\n  - {match: {model.head: cls}, test/acc1: high}\n",
                            "expect[0].test/acc1", "finite number", {}, []),
    "expect unknown match key": (HEAD + "expect:\n  - {match: {model.presett: x}, test/acc1: 1}\n",
                                 "expect[0].match.model.presett", "did you mean 'preset'", {}, []),
    "expect without values": (HEAD + "expect:\n  - {match: {model.head: cls}}\n", "expect[0]",
                              "at least one metric", {}, []),
    "expect matches nothing": (HEAD + "expect:\n  - {match: {model.preset: deit_tiny}, test/acc1: 72.2}\n",
                               "expect[0].match", "matches no cell", {}, []),
    "expect source not a string": (HEAD + "expect:\n  - {test/acc1: 1, source: [a]}\n", "expect[0].source",
                                   "source is a string", {}, []),
    "smoke unknown option": (HEAD + "smoke:\n  train: {epoch: 1}\n", "smoke.train.epoch", "did you mean 'epochs'",
                             {}, []),
    "smoke unknown section": (HEAD + "smoke:\n  trian: {epochs: 1}\n", "smoke.trian", "did you mean 'train'",
                              {}, []),
    "smoke out of range": (HEAD + "smoke:\n  train: {epochs: 0}\n", "smoke.train.epochs", "greater than 0", {},
                           ["--smoke"]),
    "smoke bad seeds": (HEAD + "smoke:\n  seeds: [-1]\n", "smoke.seeds", "non-negative", {}, []),
    "include missing file": (HEAD + "include: [nope.yaml]\n", "include[0]", "no such manifest", {}, []),
    "include cycle": (HEAD + "include: [m.yaml]\n", "include[0]", "includes itself", {}, []),
    "include not a path": (HEAD + "include: {a: 1}\n", "include", "manifest path or a list", {}, []),
    "error inside an included file": ("include: sub.yaml\n", "defaults.model.mixer", "did you mean 'attention'",
                                      {"sub.yaml": "defaults:\n  model: {preset: vit_micro, mixer: atention}\n"
                                                   "  data: {dataset: digits}\n"}, []),
}
CASES = {**{k: (v[0], v[1], v[2], {}, []) for k, v in BAD.items()}, **BAD_ENGINE}


def test_there_are_at_least_25_bad_manifests():
    assert len(CASES) >= 25 + 16 - 1


@pytest.mark.parametrize("case", CASES)
def test_bad_manifest_exits_2_naming_its_key(case, tmp_path, capsys):
    text, key, hint, extra, flags = CASES[case]
    for name, body in extra.items():
        (tmp_path / name).write_text(body)
    path = tmp_path / "m.yaml"
    path.write_text(text)
    out = tmp_path / "results"
    for command in ("plan", "run-grid"):
        assert main([command, str(path), "--out", str(out), *flags]) == 2
        err = capsys.readouterr().err
        assert key in err and hint in err, err
        assert "Traceback" not in err and "nothing was run" in err
    assert not out.exists()


def test_errors_in_included_files_name_that_file(tmp_path):
    (tmp_path / "sub.yaml").write_text("defaults:\n  model: {preset: vit_micro}\n  data: {dataset: digts}\n")
    (tmp_path / "top.yaml").write_text("include: [sub.yaml]\n")
    with pytest.raises(ManifestError) as info:
        load(tmp_path / "top.yaml")
    assert f"{tmp_path / 'sub.yaml'}:3: defaults.data.dataset" in info.value.render()


# --- running: resume after SIGKILL, failures, retry, fail-fast, locks, workers, plan ---------------
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # subprocesses: no thread oversubscription on 2 cores


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DETERMINISTIC = TINY_GRID.replace("train: {epochs: 2, lr: 3.0e-3}",
                                  "train: {epochs: 2, lr: 3.0e-3, deterministic: true, accelerator: cpu}") \
                         .replace("batch_size: 256}", "batch_size: 256, shift: 1}")  # augmentation uses the RNG

KILL_DRIVER = """
import os, signal, sys
import vitstudy.train as T
save = T.AtomicCheckpointIO.save_checkpoint
def save_then_die(self, checkpoint, path, storage_options=None):
    save(self, checkpoint, path, storage_options)
    if os.path.basename(str(path)) == "last.ckpt" and "head-gap" in str(path):
        os.kill(os.getpid(), signal.SIGKILL)   # mid-cell: after its first epoch's checkpoint
T.AtomicCheckpointIO.save_checkpoint = save_then_die
from vitstudy.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _records(out: Path, grid) -> dict:
    return {c.spec.model.head if len(grid.cells) == 2 else c.run_id:
            json.loads((grid.cell_dir(out, c) / "metrics.json").read_text()) for c in grid.cells}


def test_sigkill_mid_cell_then_rerun_resumes_it_with_identical_metrics(tmp_path, capsys, one_thread):
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(DETERMINISTIC)
    out = tmp_path / "results"
    grid = load(manifest)
    killed = subprocess.run([sys.executable, "-c", KILL_DRIVER, "run-grid", str(manifest), "--out", str(out)],
                            capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = _records(out, grid)
    assert before["cls"]["status"] == "done" and before["gap"]["status"] == "running"
    gap_dir = grid.cell_dir(out, next(c for c in grid.cells if c.spec.model.head == "gap"))
    ckpt = torch.load(gap_dir / "last.ckpt", weights_only=True, map_location="cpu")
    assert (ckpt["epoch"], ckpt["global_step"]) == (0, 5)  # 1257 images / 256 per batch = 5 steps
    assert (gap_dir / ".lock").exists()  # the killed holder's lock file is left behind ...

    assert main(["plan", str(manifest), "--out", str(out)]) == 0
    plan = capsys.readouterr().out
    assert "interrupted" in plan and "1 done" in plan and "left" in plan  # ... yet the cell is not "running"

    assert main(["run-grid", str(manifest), "--out", str(out)]) == 0  # ... and does not block
    assert "1 done, 1 skipped" in capsys.readouterr().out
    after = _records(out, grid)
    assert after["cls"] == before["cls"]  # the finished cell was not touched
    assert after["gap"]["status"] == "done" and after["gap"]["attempt"] == 2
    assert after["gap"]["resumed_from"] == {"epoch": 0, "global_step": 5}  # resumed, not restarted

    # the same cell without interruption ends with exactly the same metrics
    from vitstudy.train import run_cell

    cell = next(c for c in grid.cells if c.spec.model.head == "gap")
    reference = run_cell(cell.spec, tmp_path / "reference" / cell.run_id)
    assert reference["resumed_from"] is None
    assert after["gap"]["metrics"] == reference["metrics"]
    assert set(reference["metrics"]) >= {"train/loss", "val/loss", "test/acc1"}


FAILING = TINY_GRID.replace("epochs: 2", "epochs: 1").replace("grid:\n  model.head: [cls, gap]",
                            "grid:\n  - {model.head: [cls, gap]}\n  - {model.head: [gap], train.lr: [1.0e+30]}")


def test_failed_and_diverged_cells_are_recorded_and_the_rest_finish(tmp_path, capsys, one_thread):
    manifest = tmp_path / "failing.yaml"
    manifest.write_text(FAILING)
    out = tmp_path / "results"
    grid = load(manifest)
    ok, crash, diverge = grid.cells[0], grid.cells[1], grid.cells[2]
    assert diverge.spec.train.lr == 1e30 and diverge.spec.train.grad_clip is None
    crash_dir = grid.cell_dir(out, crash)
    crash_dir.mkdir(parents=True)
    (crash_dir / "last.ckpt").write_bytes(b"not a checkpoint")  # this cell fails when it resumes

    assert main(["run-grid", str(manifest), "--out", str(out), "--fail-fast"]) == 1
    assert "1 done, 1 failed, 1 not run" in capsys.readouterr().out  # stopped at the first failure

    assert main(["run-grid", str(manifest), "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "1 skipped (done before), 1 failed, 1 diverged" in text and "--retry-failed" in text
    rec = {c.run_id: json.loads((grid.cell_dir(out, c) / "metrics.json").read_text()) for c in grid.cells}
    assert rec[ok.run_id]["status"] == "done"
    failed, diverged = rec[crash.run_id], rec[diverge.run_id]
    assert failed["status"] == "failed" and failed["error"]["category"] == "failed" and failed["error"]["message"]
    assert diverged["status"] == "diverged" and diverged["error"]["type"] == "DivergedError"
    assert "non-finite training loss" in diverged["error"]["message"]
    assert "DivergedError" in (grid.cell_dir(out, diverge) / "traceback.txt").read_text()
    assert "Traceback" in (crash_dir / "traceback.txt").read_text()
    assert failed["attempt"] == 1  # the second run-grid did not retry it

    assert main(["run-grid", str(manifest), "--out", str(out), "--retry-failed"]) == 1
    assert "1 done, 1 skipped (done before), 1 diverged" in capsys.readouterr().out
    retried = json.loads((crash_dir / "metrics.json").read_text())
    assert retried["status"] == "done" and retried["attempt"] == 2 and retried["resumed_from"] is None
    assert not (crash_dir / "traceback.txt").exists()
    assert json.loads((grid.cell_dir(out, diverge) / "metrics.json").read_text())["attempt"] == 2


BARRIER_DRIVER = """
import sys, time, pathlib
import vitstudy.train, vitstudy.executors.local   # the slow imports, before the start signal
from vitstudy.cli import main
ready, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
ready.write_text("ready")
while not go.exists():
    time.sleep(0.01)
sys.exit(main(sys.argv[3:]))
"""


def test_two_concurrent_run_grids_train_each_cell_once(tmp_path):
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(TINY_GRID.replace("seeds: [0]", "seeds: [0, 1]").replace("epochs: 2", "epochs: 1"))
    out, go = tmp_path / "results", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", BARRIER_DRIVER, str(tmp_path / f"ready{i}"), str(go),
                               "run-grid", str(manifest), "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
             for i in range(2)]
    try:
        for i in range(2):
            for _ in range(30000):  # both processes have imported everything: start them together
                if (tmp_path / f"ready{i}").exists() or procs[i].poll() is not None:
                    break
                subprocess.run(["sleep", "0.01"])
        go.write_text("go")
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], results
    grid = load(manifest)
    trained = [line.split("✓ ")[1].split(":")[0] for stdout, _ in results for line in stdout.splitlines()
               if "✓ " in line]
    assert sorted(trained) == sorted(c.run_id for c in grid.cells)  # each cell trained by exactly one
    for c in grid.cells:
        record = json.loads((grid.cell_dir(out, c) / "metrics.json").read_text())
        assert record["status"] == "done" and record["attempt"] == 1
        assert record["env"]["pid"] in {p.pid for p in procs}


def test_workers_train_cells_in_spawned_processes(tmp_path, capsys):
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(TINY_GRID.replace("epochs: 2", "epochs: 1"))
    out = tmp_path / "results"
    assert main(["run-grid", str(manifest), "--out", str(out), "--workers", "2"]) == 0
    assert "2 done" in capsys.readouterr().out
    grid = load(manifest)
    records = [json.loads((grid.cell_dir(out, c) / "metrics.json").read_text()) for c in grid.cells]
    assert all(r["status"] == "done" and r["attempt"] == 1 for r in records)
    assert os.getpid() not in {r["env"]["pid"] for r in records}  # trained in the spawned workers


def test_plan_shows_running_cells_and_imports_no_training_code(tmp_path):
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(TINY_GRID)
    out = tmp_path / "results"
    grid = load(manifest)
    run_dir = grid.cell_dir(out, grid.cells[0])
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps({"status": "running"}))
    lock = CellLock(run_dir)
    assert lock.acquire()  # a live holder
    try:
        code = textwrap.dedent(f"""
            import sys
            from vitstudy.cli import main
            assert main(["plan", {str(manifest)!r}, "--out", {str(out)!r}]) == 0
            assert "lightning" not in sys.modules and "vitstudy.train" not in sys.modules
        """)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env=ONE_THREAD)
    finally:
        lock.release()
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "/head-" in line]
    assert lines[0].split()[0] == "running" and lines[1].split()[0] == "pending"
    assert "params" in lines[0] and "MACs" in lines[0]

"""`vitstudy bench pack`: whole grids trained packed (`run-grid --pack auto`) against one cell at a time
(`--pack off`), end to end, in one process, and the tables they end with.

Two grids: the manifest's own (the default grid unless `--manifest` says otherwise), and a learning-rate ×
seed grid of its first variant (4 rates × 3 seeds: the shape of a per-variant tuning grid). Each is run
both ways into its own temporary results folder through the local executor, as `run-grid` runs it; the
first mode of each grid alternates between grids, and a one-cell warm-up run pays the imports first.
`epochs` and `seeds` shrink the manifest's grid for a quicker figure (the result says what ran). For each
variant the two tables' test/acc1 means are compared against the standard error of their difference: a
packed grid trains every member as it would be trained alone (tests/training/test_pack.py), so the
tables agree within seed noise, and float rounding is their only difference.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import yaml

LRS = (1e-3, 2e-3, 3e-3, 5e-3)
LR_SEEDS = (0, 1, 2)
METRIC = "test/acc1"


def grid_texts(manifest: str | Path, epochs: int | None = None, seeds: int | None = None) -> dict[str, dict]:
    """{case: manifest data}: the manifest's grid (shrunk) and the lr × seed grid of its first variant."""
    data = yaml.safe_load(Path(manifest).read_text())
    data.pop("smoke", None)
    train = data.setdefault("defaults", {}).setdefault("train", {})
    if epochs:
        train["epochs"] = epochs
        train["warmup_epochs"] = min(train.get("warmup_epochs", 0), max(0, epochs - 1))
    if seeds:
        data["seeds"] = list(range(seeds))
    first = data["grid"][0] if isinstance(data["grid"], list) else data["grid"]
    fixed = {key: values[0] for key, values in first.items() if key != "train.lr"}
    lr_grid = {**data, "name": f"{data['name']}-lr", "grid": {**{k: [v] for k, v in fixed.items()},
                                                               "train.lr": list(LRS)},
               "seeds": list(LR_SEEDS)}
    return {"grid": data, "lr x seed": lr_grid}


def bench_pack(manifest: str | Path = "experiments.yaml", epochs: int | None = None,
               seeds: int | None = None, cases: tuple[str, ...] = ("grid", "lr x seed")) -> dict:
    from vitstudy.config.manifest import load
    from vitstudy.grid.executors.local import run_local
    from vitstudy.training.quiet import quiet_lightning

    quiet_lightning()
    result = {"manifest": str(manifest), "epochs": epochs, "seeds": seeds, "cases": {}}
    with tempfile.TemporaryDirectory(prefix="vitstudy-bench-pack-") as tmp:
        root = Path(tmp)
        texts = grid_texts(manifest, epochs, seeds)
        warm = {**texts["grid"], "name": "warmup", "seeds": [0]}
        warm["defaults"]["train"] = {**warm["defaults"].get("train", {}), "epochs": 1, "warmup_epochs": 0}
        _run(load(_write(root, warm)), root / "warmup", "off", run_local)
        for i, case in enumerate(cases):
            grid = load(_write(root, texts[case]))
            modes = ("off", "auto") if i % 2 == 0 else ("auto", "off")
            runs = {mode: _run(grid, root / f"{case}-{mode}".replace(" ", ""), mode, run_local)
                    for mode in modes}
            result["cases"][case] = _compare(grid, runs)
    return result


def _write(root: Path, data: dict) -> Path:
    path = root / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _run(grid, out: Path, mode: str, run_local) -> dict:
    """Wall time and each cell's record of one run of the grid."""
    from vitstudy import runfolder

    start = time.perf_counter()
    run_local(grid, out, pack=mode, echo=lambda _: None)
    wall = time.perf_counter() - start
    records = {c.run_id: runfolder.read_record(grid.cell_dir(out, c)) for c in grid.cells}
    return {"wall_s": wall, "records": records}


def _compare(grid, runs: dict) -> dict:
    """Times, speed-up, and per variant the two tables' means with the standard error of their gap."""
    variants: dict[str, list[str]] = {}
    for cell in grid.cells:
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in cell.axes) or "default"
        variants.setdefault(label, []).append(cell.run_id)
    rows, within = [], 0
    for label, ids in variants.items():
        values = {mode: [r["records"][i]["metrics"][METRIC] for i in ids
                         if r["records"][i].get("status") == "done"] for mode, r in runs.items()}
        off, auto = values["off"], values["auto"]
        se = math.sqrt(sum(statistics.variance(v) / len(v) if len(v) > 1 else 0.0 for v in (off, auto)))
        delta = statistics.fmean(auto) - statistics.fmean(off) if off and auto else math.nan
        ok = abs(delta) <= max(2 * se, 100 / 360)  # two standard errors, or one test image at least
        within += ok
        rows.append({"variant": label, "n": len(ids), "off": statistics.fmean(off) if off else None,
                     "auto": statistics.fmean(auto) if auto else None, "delta": delta, "se": se,
                     "within": ok})
    packs = {tuple(r.get("pack", {}).get("members", [])) for r in runs["auto"]["records"].values()}
    return {"cells": len(grid.cells), "off_s": runs["off"]["wall_s"], "auto_s": runs["auto"]["wall_s"],
            "speedup": runs["off"]["wall_s"] / runs["auto"]["wall_s"], "packs": len(packs - {()}),
            "variants_within_noise": within, "variants": len(rows), "rows": rows}


def format_pack(result: dict) -> str:
    shrunk = ", ".join(f"{k} {result[k]}" for k in ("epochs", "seeds") if result[k]) or "as in the manifest"
    lines = [f"packed (--pack auto) vs one cell at a time (--pack off), end to end: {result['manifest']} "
             f"({shrunk})", "",
             "| grid | cells | packs | off (s) | auto (s) | speed-up | variants within noise |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for case, r in result["cases"].items():
        lines.append(f"| {case} | {r['cells']} | {r['packs']} | {r['off_s']:.1f} | {r['auto_s']:.1f} | "
                     f"{r['speedup']:.2f}× | {r['variants_within_noise']} of {r['variants']} |")
    for case, r in result["cases"].items():
        lines += ["", f"{case}: {METRIC} mean per variant", "", "| variant | n | off | auto | Δ | 2·SE |",
                  "|---|---:|---:|---:|---:|---:|"]
        for row in r["rows"]:
            lines.append(f"| {row['variant']} | {row['n']} | {row['off']:.2f} | {row['auto']:.2f} | "
                         f"{row['delta']:+.2f} | {2 * row['se']:.2f} |")
    return "\n".join(lines)

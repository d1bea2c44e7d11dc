"""`vitstudy bench`: speed as ratios measured in one process, one module per part (mixers vs timm,
Lightning's loop vs a bare one, the data pipelines, bf16 vs fp32, utilisation, token-count scaling, a
training process beside other processes), with what they share in vitstudy.bench.common. Importing
this package imports no torch: the command line lists the parts without loading them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

PARTS = ("mixers", "loop", "data", "precision", "utilisation", "scaling", "contention", "pack")
LONG_PARTS = ("pack",)  # whole grids, twice: run when named, not by `bench all`


def run_parts(parts: Iterable[str], *, precisions: Iterable[str], rounds: int | None, only: list[str] | None,
              manifest: str | Path, device: str | None, out: Path,
              seconds: float | None = None, epochs: int | None = None,
              seeds: int | None = None) -> dict[str, dict]:
    """Run the named parts (each of PARTS) in the order given: print each part's table and write
    `<out>/<name>.json` (mixers: one per precision, `mixers_<precision>`); mixers and scaling also write
    their plots into `out`. `rounds`: None for each part's own; `only`: the mixers' variant labels;
    `manifest`: the grid whose first cell the loop, utilisation and contention parts time; `device`:
    None for cuda when there is a GPU; `seconds`: contention's time per measurement (None for its
    own); `epochs`, `seeds`: pack's shrunk grid (None: the manifest's). Returns the results by JSON name."""
    import torch

    from vitstudy.runfolder import write_json

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out)
    kw = {"rounds": rounds} if rounds else {}
    results: dict[str, dict] = {}

    def emit(name: str, result: dict, table: str) -> None:
        print(table)
        write_json(out / f"{name}.json", result)
        results[name] = result

    for part in parts:
        if part == "mixers":
            from vitstudy.bench import mixers as bench

            by_precision = {}
            for p in precisions:
                by_precision[p] = result = bench.bench_mixers(precision=p, only=only, device=device, **kw)
                emit(f"mixers_{p}", result, bench.format_mixers(result))
            bench.plot_mixers(by_precision, out)
        elif part == "loop":
            from vitstudy.bench import loop as bench

            result = bench.bench_loop(manifest, **kw)
            emit("loop", result, bench.format_loop(result))
        elif part == "data":
            from vitstudy.bench import data as bench

            result = bench.bench_data(device=device, **kw)
            emit("data", result, bench.format_data(result))
        elif part == "precision":
            from vitstudy.bench import precision as bench

            result = bench.bench_precision(device=device, **kw)
            emit("precision", result, bench.format_precision(result))
        elif part == "utilisation":
            from vitstudy.bench import utilisation as bench

            models = bench.utilisation_models(manifest=manifest)
            result = bench.bench_utilisation(models, device=device, **kw)
            emit("utilisation", result, bench.format_utilisation(result))
        elif part == "scaling":
            from vitstudy.bench import scaling as bench

            result = bench.bench_scaling(device=device, **kw)
            emit("scaling", result, bench.format_scaling(result))
            bench.plot_scaling(result, out)
        elif part == "contention":
            from vitstudy.bench import contention as bench

            result = bench.bench_contention(manifest, **kw, **({"seconds": seconds} if seconds else {}))
            emit("contention", result, bench.format_contention(result))
        elif part == "pack":
            from vitstudy.bench import pack as bench

            result = bench.bench_pack(manifest, epochs=epochs, seeds=seeds)
            emit("pack", result, bench.format_pack(result))
        else:
            raise ValueError(f"unknown bench part {part!r}; parts: {', '.join(PARTS)}")
    return results

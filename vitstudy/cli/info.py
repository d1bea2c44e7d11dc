"""The commands that train nothing: `plan` (cells, status, cost), `report` (tables and plots from the
files on disk), `profile` (params, MACs, images/s), `bench` (speed ratios) and `list` (the registries)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import ValidationError

from vitstudy.bench import PARTS as BENCH_PARTS
from vitstudy.cli import paths
from vitstudy.cli.common import EXIT_OK, load_grid, refuse, usage_error
from vitstudy.config.errors import explain, shown

# profile's options for one kind of model only: given with the other, they are an error, not ignored
PROFILE_OPTIONS = {"device": "a manifest", "batch_size": "a manifest", "img_size": "a preset",
                   "num_classes": "a preset", "in_chans": "a preset"}


def cmd_plan(args) -> int:
    """The cells with status, params and MACs, and an ETA once some ran. Imports no training code
    (no lightning): params and MACs come from a meta-device model, once per distinct model."""
    if refused := paths.folder("--out", args.out, written=False):
        return refuse(refused)
    grid = load_grid(args)
    from vitstudy.config.budget import percent
    from vitstudy.grid.plan import plan
    from vitstudy.results.format import human

    state = plan(grid, args.out)
    print(f"grid '{grid.folder}': {len(grid.cells)} cells -> {args.out / grid.folder}")
    for row in state.rows:
        expect = " ".join(f"{k}={v:g}" + (f"±{row.cell.tolerance[k]:g}" if k in row.cell.tolerance else "")
                          for k, v in row.cell.expect.items())
        print(f"  {row.status:11s} {row.cell.grid}/{row.cell.run_id:60s} {human(row.params):>7s} params "
              f"{human(row.macs):>7s} MACs" + (f"  expect {expect}" if expect else "") + _stage(row.cell)
              + _budget(row.cell))
    for row in state.budget_worst():
        b = row.cell.budget
        print(f"budget: {b.cost} matched to {b.reference:,.0f} ({b.label}) within ±{percent(b.tolerance)} by "
              f"{b.adjust}; worst deviation {b.deviation:+.1%} ({row.cell.grid}/{row.cell.run_id})")
    print(state.summary())
    return EXIT_OK


def _budget(cell) -> str:
    """A budget-matched cell in `plan`: the solved value of the budget's option, its cost's deviation."""
    b = cell.budget
    return f"  {b.adjust.split('.')[1]} {b.value} (budget, {b.deviation:+.1%})" if b else ""


def _stage(cell) -> str:
    """A tuned grid's cells in `plan`: its tuning cells, and the final cells that pick from them."""
    if cell.stage == "tune":
        return "  tuning"
    tune_from = cell.spec.train.tune_from
    return f"  tuned on {cell.spec.train.tune_metric} over {len(tune_from)} tuning cells" if tune_from else ""


def cmd_report(args) -> int:
    """The report of a results folder or a manifest: every path and axis checked before anything is
    written (the axes once the runs are read)."""
    refused = _report_paths(args)
    refused += [f"--cols {shown(name)}: also in --rows; an axis orders the rows or makes columns, not both"
                for name in args.cols or [] if name in (args.rows or [])]
    if refused:
        return refuse(refused)
    from vitstudy.results.groups import UnknownAxis
    from vitstudy.results.render import render
    from vitstudy.results.table import for_source
    from vitstudy.results.write import write

    try:
        report, where = for_source(args.source, args.out, rows=args.rows, cols=args.cols,
                                   metrics=args.metrics, baseline=args.baseline)
    except UnknownAxis as e:  # summarize resolves --rows, then --cols, then --baseline's axes
        given = {"--rows": args.rows, "--cols": args.cols, "--baseline": args.baseline}
        return usage_error(f"{next(o for o, names in given.items() if e.name in (names or ()))}: {e}")
    except ValueError as e:
        return usage_error(str(e))
    written = write(report, args.to or where, plots=not args.no_plots)
    print(render(report, args.format), end="")
    print(f"\nwritten: {', '.join(str(p) for p in written)}", file=sys.stderr)
    return EXIT_OK


def _report_paths(args) -> list[str]:
    """What is wrong with where `report` writes: --to if given, else the results folder it reads, else
    (for a manifest) under the results root."""
    if args.to is not None:
        return paths.folder("--to", args.to, written=True) + paths.folder("--out", args.out, written=False)
    if args.source.is_dir():
        return [f"{m}, or name another with --to" for m in paths.folder("results folder", args.source,
                                                                         written=True)]
    return paths.folder("--out", args.out, written=True)


def cmd_profile(args) -> int:
    """Params and MACs of a preset (with the sizes given), or of every cell of a manifest with images/s
    measured. A preset's spec is checked before torch loads."""
    manifest = args.model.endswith((".yaml", ".yml")) or Path(args.model).is_file()
    kind = "a manifest" if manifest else "a preset"
    misplaced = [f"--{name.replace('_', '-')} applies to {applies}, not {kind}"
                 for name, applies in PROFILE_OPTIONS.items()
                 if applies != kind and getattr(args, name) is not None]
    if misplaced:
        return refuse(misplaced)
    if manifest:
        from vitstudy.results.cost_table import cost_table, to_markdown

        if args.device and args.device not in (here := _devices()):
            return usage_error(f"--device {args.device}: not on this machine; valid here: {', '.join(here)}")
        table = cost_table(Path(args.model), device=args.device, batch_size=args.batch_size)
        print(json.dumps(table.rows) if args.json else to_markdown(table))
        return EXIT_OK
    sizes = {"img_size": args.img_size, "num_classes": args.num_classes, "in_chans": args.in_chans}
    try:
        spec = _preset_spec(args.model, {k: v for k, v in sizes.items() if v is not None})
    except ValidationError as e:  # the sizes given do not fit the preset
        given = "".join(f" --{k.replace('_', '-')} {v}" for k, v in sizes.items() if v is not None)
        return refuse([f"{args.model}{given}: {explain(err, None)}" for err in e.errors()])
    from vitstudy.models.cost import model_cost
    from vitstudy.results.format import human

    cost = model_cost(spec)
    if args.json:
        print(json.dumps({"model": args.model, "img_size": spec.img_size,
                          "num_classes": spec.num_classes, **cost.as_dict()}))
    else:
        print(f"{args.model} @ {spec.img_size}px, {spec.num_classes} classes: "
              f"{human(cost.params)} params ({cost.params:,}), {human(cost.macs)} MACs ({cost.macs:,})")
    return EXIT_OK


def _preset_spec(preset: str, sizes: dict[str, int]):
    """The preset's ModelSpec with `sizes`, built as vitstudy.models.build.resolve_model builds it but
    without torch: an unknown preset or sizes that do not fit it are refused before torch loads."""
    from vitstudy.config.model_spec import MODEL_DEFAULTS, ModelSpec
    from vitstudy.config.presets import preset_args

    return ModelSpec(preset=preset, **{**MODEL_DEFAULTS, **preset_args(preset), **sizes})


def _devices() -> list[str]:
    """The device names `profile --device` can time on this machine."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(["cuda"] if gpus else []), *(f"cuda:{i}" for i in range(gpus)),
            *(["mps"] if torch.backends.mps.is_available() else [])]


def cmd_bench(args) -> int:
    if refused := paths.folder("--out", args.out, written=True):
        return refuse(refused)
    from vitstudy.bench import LONG_PARTS, run_parts

    everything = args.what == "all" or "all" in args.what
    parts = [p for p in BENCH_PARTS if (p in args.what) or (everything and p not in LONG_PARTS)]
    if args.only and "mixers" in parts:
        from vitstudy.bench.mixers import variants
        from vitstudy.registry import unknown_name

        labels = [label for label, _ in variants()]
        if unknown := [label for label in args.only if label not in labels]:
            return refuse([f"--only: {unknown_name('mixer variant', label, labels)}" for label in unknown])
    run_parts(parts, precisions=args.precision, rounds=args.rounds, only=args.only, manifest=args.manifest,
              device=args.device, out=args.out, seconds=args.seconds, epochs=args.epochs, seeds=args.seeds)
    return EXIT_OK


def cmd_list(args) -> int:
    from vitstudy.config.presets import PRESETS
    from vitstudy.registry import REGISTRIES

    for reg in REGISTRIES:
        print(f"{reg.kind}s:")
        for e in reg.entries():
            print(f"  {e.name:12s} {e.summary}" + (f"  [{e.paper}]" if e.paper else ""))
    print("presets:")
    for name, p in PRESETS.items():
        print(f"  {name:12s} {p['summary']}  [{p['paper']}]")
    return EXIT_OK

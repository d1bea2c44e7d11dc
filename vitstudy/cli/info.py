"""The commands that train nothing: `plan` (cells, status, cost), `report` (tables and plots from the
files on disk), `profile` (params, MACs, images/s), `bench` (speed ratios) and `list` (the registries)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vitstudy.bench import PARTS as BENCH_PARTS
from vitstudy.cli.common import EXIT_OK, load_grid, usage_error


def cmd_plan(args) -> int:
    """The cells with status, params and MACs, and an ETA once some ran. Imports no training code
    (no lightning): params and MACs come from a meta-device model, once per distinct model."""
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
    from vitstudy.results.render import render
    from vitstudy.results.table import for_source
    from vitstudy.results.write import write

    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None
    baseline = dict(kv.split("=", 1) for kv in split(args.baseline)) if args.baseline else None
    try:
        report, where = for_source(args.source, args.out, rows=split(args.rows), cols=split(args.cols),
                                   metrics=split(args.metrics), baseline=baseline)
    except ValueError as e:
        return usage_error(str(e))
    written = write(report, args.to or where, plots=not args.no_plots)
    print(render(report, args.format), end="")
    print(f"\nwritten: {', '.join(str(p) for p in written)}", file=sys.stderr)
    return EXIT_OK


def cmd_profile(args) -> int:
    if args.model.endswith((".yaml", ".yml")) or Path(args.model).is_file():
        from vitstudy.results.cost_table import cost_table, to_markdown

        table = cost_table(Path(args.model), device=args.device, batch_size=args.batch_size)
        print(json.dumps(table.rows) if args.json else to_markdown(table))
        return EXIT_OK
    from vitstudy.models.build import resolve_model
    from vitstudy.models.cost import model_cost
    from vitstudy.results.format import human

    spec = resolve_model(args.model, img_size=args.img_size, num_classes=args.num_classes,
                         in_chans=args.in_chans)
    cost = model_cost(spec)
    if args.json:
        print(json.dumps({"model": args.model, "img_size": spec.img_size,
                          "num_classes": spec.num_classes, **cost.as_dict()}))
    else:
        print(f"{args.model} @ {spec.img_size}px, {spec.num_classes} classes: "
              f"{human(cost.params)} params ({cost.params:,}), {human(cost.macs)} MACs ({cost.macs:,})")
    return EXIT_OK


def cmd_bench(args) -> int:
    from vitstudy.bench import LONG_PARTS, run_parts

    everything = args.what == "all" or "all" in args.what
    parts = [p for p in BENCH_PARTS if (p in args.what) or (everything and p not in LONG_PARTS)]
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

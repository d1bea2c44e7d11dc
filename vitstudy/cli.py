"""The `vitstudy` command: parse, call, print. Exit status 0 when every cell is done, 1 when some
failed, 2 for bad input (a manifest error, an unknown name), with a message and no traceback."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from vitstudy.manifest import ManifestError, load
from vitstudy.registry import UnknownNameError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ManifestError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `vitstudy plan M | head`
        sys.stderr.close()
        return EXIT_OK
    except UnknownNameError as e:
        print(f"vitstudy: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as e:
        for err in e.errors():
            where = ".".join(str(x) for x in err["loc"]) or e.title
            print(f"vitstudy: error: {where}: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vitstudy", description="Ablation grids for Vision Transformers.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run-grid", help="train every pending cell of a manifest, then print the table")
    run.add_argument("manifest", type=Path)
    run.add_argument("--out", type=Path, default=Path("results"), help="results root (default: results)")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failed cell")
    run.set_defaults(func=cmd_run_grid)

    plan = sub.add_parser("plan", help="list a manifest's cells with ids, status, params and MACs")
    plan.add_argument("manifest", type=Path)
    plan.add_argument("--out", type=Path, default=Path("results"))
    plan.set_defaults(func=cmd_plan)

    prof = sub.add_parser(
        "profile", help="parameters and MACs of a preset",
        description="Parameter count and MACs of a model preset, without training. MACs are the "
                    "multiply-accumulates of every linear and convolution layer plus the two attention "
                    "matrix products (q·kᵀ and weights·v) for one image; norms and activations are "
                    "not counted.")
    prof.add_argument("model", help="a preset name (see `vitstudy list`)")
    prof.add_argument("--img-size", type=int)
    prof.add_argument("--num-classes", type=int)
    prof.add_argument("--in-chans", type=int)
    prof.add_argument("--json", action="store_true", help="print JSON")
    prof.set_defaults(func=cmd_profile)

    lst = sub.add_parser("list", help="every registered mixer, normaliser, tokenizer, preset, dataset")
    lst.set_defaults(func=cmd_list)
    return p


def _quiet_lightning() -> None:
    import lightning  # noqa: F401  (its import sets its loggers to INFO: set them after it)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


def cmd_run_grid(args) -> int:
    grid = load(args.manifest)  # every cell validated before anything runs
    _quiet_lightning()
    from vitstudy import files
    from vitstudy.executors.local import run_local
    from vitstudy.report import load_records, markdown_table

    print(f"grid '{grid.name}': {len(grid.cells)} cells -> {args.out / grid.name}")
    counts = run_local(grid, args.out, fail_fast=args.fail_fast)
    records = load_records(args.out / grid.name,
                           [(c.run_id, c.spec.model_dump(mode="json")) for c in grid.cells])
    table = markdown_table(records)
    files.write_text(args.out / grid.name / "table.md", table)
    print()
    print(table)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{summary}; table written to {args.out / grid.name / 'table.md'}")
    bad = sum(n for s, n in counts.items() if s not in ("done", "skipped"))
    return EXIT_FAILED if bad else EXIT_OK


def cmd_plan(args) -> int:
    grid = load(args.manifest)
    from vitstudy.profile import human, model_cost
    from vitstudy.train import read_status

    print(f"grid '{grid.name}': {len(grid.cells)} cells")
    for cell in grid.cells:
        cost = model_cost(cell.spec.model)
        status = read_status(args.out / grid.name / cell.run_id)
        print(f"  {status:8s} {cell.run_id:60s} {human(cost.params):>7s} params {human(cost.macs):>7s} MACs")
    return EXIT_OK


def cmd_profile(args) -> int:
    from vitstudy.models.build import resolve_model
    from vitstudy.profile import human, model_cost

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


def cmd_list(args) -> int:
    from vitstudy.models.presets import PRESETS
    from vitstudy.registry import DATASETS, HEADS, MIXERS, NORMALIZERS, POSITIONS, TOKENIZERS

    for title, reg in (("mixers", MIXERS), ("normalizers", NORMALIZERS), ("tokenizers", TOKENIZERS),
                       ("positions", POSITIONS), ("heads", HEADS), ("datasets", DATASETS)):
        print(f"{title}:")
        for e in reg.entries():
            print(f"  {e.name:12s} {e.summary}" + (f"  [{e.paper}]" if e.paper else ""))
    print("presets:")
    for name, p in PRESETS.items():
        print(f"  {name:12s} {p['summary']}  [{p['paper']}]")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""What scripts/device_check.sh runs: three checks of a CUDA machine, for the README's performance
section, in well under 8 minutes on one GPU, with nothing downloaded (digits ship offline, the rest is
random data). Never a test dependency: tests/test_device_check.py runs it on the CPU at toy sizes.

1. grid: the default grid (experiments.yaml, its epochs capped by --grid-epochs so the check stays short)
   run twice by `vitstudy run-grid` into two temporary results roots, one cell at a time (`--pack off`)
   and packed (`--pack auto`: cells that differ only in seed/lr/wd train as one vmapped model). It prints
   both wall times and their ratio, and the two tables' test/acc1 means side by side: packing must give
   the same table within seed noise (|Δ| <= 3 standard errors of the difference + 1 point).
2. mfu: a ViT-S/16 training step (224 px, synthetic images, the cell's own step: label-smoothed loss,
   fused AdamW) in bf16 autocast, eager vs torch.compile: ms/step (median of interleaved rounds) and
   MFU = model FLOPs per step (counted, vitstudy.bench.flops) / step time / the GPU's dense bf16 peak
   (datasheet, by device name; DEVICE_CHECK_PEAK_TFLOPS overrides; else the faster of a measured bf16
   and fp32 matmul).
3. mixers: every token mixer, and attention with every score normaliser (vitstudy.bench.mixers.variants),
   builds and takes a few steps on one fixed batch in fp32 and bf16: finite losses, the last below the
   first, or the variant fails.

Exit status 1 when any check fails (also when the packed grid misses --min-speedup, 10× on CUDA).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import yaml

from vitstudy.bench.common import autocast, calibrate, interleaved, random_batch, train_step
from vitstudy.bench.flops import model_step_flops
from vitstudy.bench.mixers import variants
from vitstudy.config.manifest import load
from vitstudy.config.spec import ModelSpec
from vitstudy.models.build import build_model, resolve_model
from vitstudy.results.groups import group_runs, short_axis
from vitstudy.results.runs import runs_from_manifest
from vitstudy.training.step import adamw, cross_entropy

REPO = Path(__file__).resolve().parents[1]
# dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, TFLOP/s; first match wins
PEAK_BF16_TFLOPS = [("GH200", 989), ("H200", 989), ("H100 PCIe", 756), ("H100 NVL", 835), ("H100", 989),
                    ("H800", 989), ("B200", 2250), ("B100", 1750), ("A100", 312), ("A800", 312),
                    ("L40S", 362), ("L40", 181), ("L4", 121), ("A30", 165),
                    ("RTX 6000 Ada", 364), ("RTX 4090", 165), ("RTX 3090", 71), ("MI300X", 1307),
                    ("MI250X", 383)]


def options(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, each defaulting to its DEVICE_CHECK_* variable, then to a default that depends on
    --device and --tiny."""
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=env("DEVICE_CHECK_DEVICE"), help="cuda or cpu (default: cuda if any)")
    p.add_argument("--tiny", action="store_true", default=env("DEVICE_CHECK_TINY", "0") not in ("", "0"),
                   help="toy sizes, to test this script on a CPU (DEVICE_CHECK_TINY=1)")
    p.add_argument("--parts", default=env("DEVICE_CHECK_PARTS", "grid,mfu,mixers"),
                   help="comma-separated: grid, mfu, mixers (DEVICE_CHECK_PARTS)")
    p.add_argument("--manifest", type=Path, default=REPO / "experiments.yaml")
    p.add_argument("--grid-epochs", type=int, default=env("DEVICE_CHECK_EPOCHS"),
                   help="epochs per grid cell, at most the manifest's (DEVICE_CHECK_EPOCHS; default 5, "
                        "tiny 2)")
    p.add_argument("--min-speedup", type=float, default=env("DEVICE_CHECK_MIN_SPEEDUP"),
                   help="fail when packed is less than this many times faster (DEVICE_CHECK_MIN_SPEEDUP; "
                        "default 10 on cuda, else 0)")
    p.add_argument("--batch-size", type=int, help="mfu: the ViT-S/16 batch (default 128, tiny 8)")
    p.add_argument("--peak-tflops", type=float, default=env("DEVICE_CHECK_PEAK_TFLOPS"),
                   help="mfu: the device's dense bf16 peak in TFLOP/s (DEVICE_CHECK_PEAK_TFLOPS; default: "
                        "by device name)")
    p.add_argument("--compile-backend", default=env("DEVICE_CHECK_COMPILE_BACKEND"),
                   help="mfu: torch.compile backend (DEVICE_CHECK_COMPILE_BACKEND; default inductor, but "
                        "aot_eager for --tiny on cpu, where inductor takes minutes to compile)")
    a = p.parse_args(argv)
    a.device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    a.grid_epochs = int(a.grid_epochs or (2 if a.tiny else 5))
    a.min_speedup = float(a.min_speedup if a.min_speedup is not None else
                          10 if a.device == "cuda" and not a.tiny else 0)
    a.batch_size = a.batch_size or (8 if a.tiny else 128)
    a.peak_tflops = float(a.peak_tflops) if a.peak_tflops else None
    a.compile_backend = a.compile_backend or ("aot_eager" if a.tiny and a.device == "cpu" else "inductor")
    return a


# ---------------------------------------------------------------- 1. the grid, packed and unpacked


def grid_manifest(source: Path, dest: Path, epochs: int, tiny: bool) -> Path:
    """`source` with its epochs capped at `epochs` (warm-up scaled alike) and no smoke section; --tiny:
    one narrow model on 256 training images, two seeds (one pack of two)."""
    m = yaml.safe_load(source.read_text())
    m.pop("smoke", None)
    train = m["defaults"]["train"]
    full = train["epochs"]
    if epochs < full:
        train["warmup_epochs"] = train.get("warmup_epochs", 0) * epochs / full
        train["epochs"] = epochs
    m["defaults"].setdefault("log", {})["progress_bar"] = False
    if tiny:
        m["defaults"]["model"].update(embed_dim=32, depth=2, num_heads=2)
        m["defaults"]["data"]["train_subset"] = 256
        m["grid"] = [{"model.mixer": ["attention"], "model.normalizer": ["softmax"]}]
        m["seeds"] = [0, 1]
    dest.write_text(yaml.safe_dump(m, sort_keys=False))
    return dest


def run_grid(manifest: Path, root: Path, pack: str, device: str) -> tuple[float, int, Path]:
    """`vitstudy run-grid MANIFEST --out ROOT --pack PACK` in a child process: its wall seconds, exit
    status and log file."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    log = root.with_suffix(".log")
    start = time.perf_counter()
    with log.open("w") as out:
        command = [sys.executable, "-m", "vitstudy.cli", "run-grid", str(manifest), "--out", str(root),
                   "--pack", pack]
        rc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    return time.perf_counter() - start, rc, log


def acc_rows(manifest: Path, root: Path) -> dict[str, list[float]]:
    """Row label -> the finished seeds' test/acc1, from the files on disk."""
    runs, _, _ = runs_from_manifest(manifest, root)
    _, groups = group_runs(runs)
    return {" ".join(f"{short_axis(k)}={v}" for k, v in g.label.items()) or "-": g.values("test/acc1")
            for g in groups}


def same_within_noise(a: list[float], b: list[float]) -> bool:
    """Means within 3 standard errors of their difference, plus 1 point for rounding and tiny n."""
    se = math.sqrt(sum(statistics.variance(x) / len(x) if len(x) > 1 else 0.0 for x in (a, b)))
    return bool(a) and len(a) == len(b) and abs(statistics.fmean(a) - statistics.fmean(b)) <= 3 * se + 1.0


def mean_std(x: list[float]) -> str:
    return f"{statistics.fmean(x):.2f} ± {statistics.stdev(x) if len(x) > 1 else 0:.2f}" if x else "–"


def check_grid(args, work: Path) -> bool:
    manifest = grid_manifest(args.manifest, work / "grid.yaml", args.grid_epochs, args.tiny)
    grid = load(manifest)
    full = yaml.safe_load(args.manifest.read_text())["defaults"]["train"]["epochs"]
    print(f"{args.manifest.name}{' (tiny)' if args.tiny else ''}: {len(grid.cells)} cells, "
          f"{grid.cells[0].spec.train.epochs} of {full} epochs each; vitstudy run-grid --pack off, then auto")
    times, ok = {}, True
    for pack in ("off", "auto"):
        times[pack], rc, log = run_grid(manifest, work / f"pack_{pack}", pack, args.device)
        print(f"grid --pack {pack}: {times[pack]:.2f} s, exit {rc}")
        if rc:
            ok = False
            tail = "\n  ".join(log.read_text().splitlines()[-15:])
            print(f"  run-grid failed; the end of its output:\n  {tail}")
    if not ok:
        return False
    ratio = times["off"] / times["auto"]
    print(f"grid speedup (packed over unpacked): {ratio:.2f}x" +
          (f" (target >= {args.min_speedup:g}x: {'met' if ratio >= args.min_speedup else 'MISSED'})"
           if args.min_speedup else ""))
    off, auto = acc_rows(manifest, work / "pack_off"), acc_rows(manifest, work / "pack_auto")
    print("\n| row | test/acc1 unpacked | test/acc1 packed | Δ | n | same within noise |\n"
          "|---|---|---|---|---|---|")
    for label in off:
        a, b = off[label], auto.get(label, [])
        same = same_within_noise(a, b)
        ok &= same
        delta = f"{statistics.fmean(b) - statistics.fmean(a):+.2f}" if a and b else "–"
        print(f"| {label} | {mean_std(a)} | {mean_std(b)} | {delta} | {len(a)}/{len(b)} | "
              f"{'yes' if same else 'NO'} |")
    return ok and ratio >= args.min_speedup


# ---------------------------------------------------------------- 2. MFU of a ViT-S/16 step, eager vs compile


def mfu_spec(tiny: bool) -> ModelSpec:
    if tiny:
        return resolve_model("vit_small", img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=2,
                             num_classes=10)
    return resolve_model("vit_small", img_size=224, num_classes=1000)


def datasheet_peak(device_name: str) -> tuple[str, float] | None:
    """(the table's key, dense bf16 TFLOP/s) of the first PEAK_BF16_TFLOPS key in the device's name."""
    return next(((key, tflops) for key, tflops in PEAK_BF16_TFLOPS if key in device_name), None)


def peak_flop_s(args, device: torch.device) -> tuple[float, str]:
    """The device's bf16 peak FLOP/s and where the figure comes from."""
    if args.peak_tflops:
        return args.peak_tflops * 1e12, "given (DEVICE_CHECK_PEAK_TFLOPS)"
    if device.type == "cuda" and (known := datasheet_peak(torch.cuda.get_device_name(device))):
        return known[1] * 1e12, f"datasheet, dense bf16 of {known[0]}"
    n = 512 if args.tiny else 4096
    mm = {}
    for dtype in (torch.bfloat16, torch.float32):  # a CPU without bf16 units multiplies fp32 faster
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        mm[str(dtype)] = lambda a=a, b=b: torch.mm(a, b)
    calls = {k: calibrate(fn, 0.1, device)[1] for k, fn in mm.items()}
    t = min(statistics.median(ts) for ts in interleaved(mm, calls, 3, device).values())
    return 2 * n ** 3 / t, f"measured: the faster of a {n}³ bf16 and fp32 matmul; no datasheet figure"


def check_mfu(args, work: Path) -> bool:
    device = torch.device(args.device)
    spec, batch = mfu_spec(args.tiny), args.batch_size
    flops = sum(model_step_flops(spec, batch).values())
    peak, source = peak_flop_s(args, device)
    x, y = random_batch(spec, batch, device)
    steps, compile_s = {}, 0.0
    for mode in ("eager", "compile"):
        torch.manual_seed(0)
        model = build_model(spec).to(device)
        if mode == "compile":
            model.compile(backend=args.compile_backend)
        steps[mode] = train_step(model, x, y, "bf16")
        start = time.perf_counter()
        steps[mode]()  # compiles forward and backward
        calibrate(steps[mode], 0.0, device)
        if mode == "compile":
            compile_s = time.perf_counter() - start
    calls = {mode: calibrate(fn, 0.05 if args.tiny else 0.5, device)[1] for mode, fn in steps.items()}
    times = interleaved(steps, calls, 3 if args.tiny else 5, device)
    print(f"{spec.img_size} px / {spec.patch_size} px patches, {spec.embed_dim} wide × {spec.depth} blocks, "
          f"batch {batch}, bf16 autocast, synthetic images; torch.compile backend {args.compile_backend} "
          f"(first steps took {compile_s:.1f} s)")
    print(f"peak: {peak / 1e12:.4g} TFLOP/s ({source}); model FLOPs per step: {flops / 1e9:.4g} GFLOP\n")
    print("| mode | ms/step | achieved TFLOP/s | MFU |\n|---|---|---|---|")
    ok = True
    for mode, ts in times.items():
        t = statistics.median(ts)
        ok &= math.isfinite(t) and t > 0
        print(f"| {mode} | {1000 * t:.4g} | {flops / t / 1e12:.4g} | {100 * flops / t / peak:.4g}% |")
    print(f"compile speedup: {statistics.median(times['eager']) / statistics.median(times['compile']):.2f}x")
    return ok


# ---------------------------------------------------------------- 3. every mixer and normaliser trains


def losses(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str,
           steps: int) -> list[float]:
    """Training losses of `steps` AdamW steps on one fixed batch."""
    opt = adamw(model, lr=1e-3, weight_decay=0.05, betas=(0.9, 0.999))
    out = []
    for _ in range(steps):
        with autocast(x.device, precision):
            loss = cross_entropy(model(x), y, 0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out.append(loss.item())
    return out


def check_mixers(args, work: Path) -> bool:
    device = torch.device(args.device)
    dims = (dict(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2) if args.tiny
            else dict(img_size=32, patch_size=4, embed_dim=192, depth=2, num_heads=3))
    batch, steps = (16, 4) if args.tiny else (64, 8)
    print(f"{steps} AdamW steps on one fixed batch of {batch}, {dims}; pass: finite losses, last < first\n")
    print("| variant | fp32 loss first → last | bf16 loss first → last | result |\n|---|---|---|---|")
    ok = True
    for label, kw in variants():
        cols, good = [], True
        for precision in ("fp32", "bf16"):
            try:
                torch.manual_seed(0)
                spec = resolve_model(None, in_chans=3, num_classes=10, **dims, **kw)
                x, y = random_batch(spec, batch, device)
                ls = losses(build_model(spec).to(device), x, y, precision, steps)
                good &= all(map(math.isfinite, ls)) and ls[-1] < ls[0]
                cols.append(f"{ls[0]:.4f} → {ls[-1]:.4f}")
            except Exception as e:  # noqa: BLE001 - a failing variant is a row of the table, not the end
                good = False
                cols.append(f"error: {type(e).__name__}: {str(e)[:80]}")
        ok &= good
        print(f"| {label} | {cols[0]} | {cols[1]} | {'pass' if good else 'FAIL'} |")
    return ok


PARTS = {"grid": check_grid, "mfu": check_mfu, "mixers": check_mixers}  # each (args, a scratch folder)


def header(device: torch.device) -> None:
    cuda = torch.version.cuda or "none"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        name = f"{props.name}, {props.total_memory / 2 ** 30:.0f} GiB, sm_{props.major}{props.minor}"
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device.type} ({name}); torch {torch.__version__}, CUDA {cuda}, "
          f"cuDNN {torch.backends.cudnn.version()}, Python {sys.version.split()[0]}")


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("device: cuda asked for, but torch sees no GPU")
        return 1
    header(device)
    wanted = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := [p for p in wanted if p not in PARTS]:
        print(f"unknown part(s) {unknown}; valid: {', '.join(PARTS)}")
        return 2
    results = {}
    with tempfile.TemporaryDirectory(prefix="device_check_") as tmp:
        for name in wanted:
            print(f"\n== {name}")
            start = time.perf_counter()
            try:
                results[name] = PARTS[name](args, Path(tmp))
            except Exception:  # noqa: BLE001 - report the part as failed and go on with the others
                traceback.print_exc(file=sys.stdout)
                results[name] = False
            print(f"({name}: {time.perf_counter() - start:.1f} s, {'pass' if results[name] else 'FAIL'})")
    failed = [name for name, good in results.items() if not good]
    print(f"\ndevice check: {'FAIL: ' + ', '.join(failed) if failed else 'PASS'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

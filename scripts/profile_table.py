"""Reproduce a paper's size table: params and MACs of presets at 224 px and 1000 classes, against the
figures the paper printed (the presets' `published` dict), as a Markdown table.

    python scripts/profile_table.py t2t_vit_7 t2t_vit_14 --out results/profile/t2t_vit.md
    python scripts/profile_table.py --group t2t --out results/profile/t2t_vit.md   # every T2T preset

Params count trainable and frozen parameters plus fixed tables (`vitstudy.models.cost.count_params`); MACs
are counted with torch's FlopCounterMode (`vitstudy.models.cost.model_cost`). Δ is ours minus published.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vitstudy.config.presets import PRESETS, T2T_PRESETS
from vitstudy.models.build import resolve_model
from vitstudy.models.cost import model_cost

GROUPS = {"t2t": list(T2T_PRESETS)}
NOTES = {"t2t": """\
# T2T-ViT (Yuan et al. 2021): params and MACs at 224 px, 1000 classes

Published: Table 2 of the paper (PAPERS.md §2). Params include the two fixed tables the official code
stores as frozen `nn.Parameter`s (the sinusoid position table and the Performer's 32×64 random features);
without them T2T-ViT-10 would be 5.83M, not the printed 5.9M. MACs: every linear layer and the attention
matrix products; for the Performer T2T layers the products that are linear in N (ω·q, ω·k, φ(q)·Σφ(k),
φ(k)ᵀv, φ(q)·(φ(k)ᵀv)), 32.2M of T2T-ViT-14's 4.78G. The T2T module alone is exactly 299.0M MACs
(Performer) and 1604.2M (transformer), as tests/test_t2t.py derives by hand.

Every params figure rounds to the printed one. MACs are within 2% except T2T-ViT-7 (+4.3%) and -12
(−2.1%), which still round to the printed 1.1G and 1.8G: the backbone blocks cost 123.2M MACs each at
width 256 (linear layers and attention products are fixed by the architecture), and for both printed
values to be within 2% the 5 blocks between the two models would have to cost at least 642M, i.e.
128.4M each; so no count of this architecture gets both within 2%, and the paper's two-digit figures
are rounded. T2T-ViT-24's 13.8G (marked ≈: 1.0% off, but not to the printed digit) contradicts the
paper's own 15.0G for T2T-ViT_t-24: the two differ only in their T2T layers, which as transformers cost
1.305G more than as Performers at any width (the paper: 6.1 − 4.8 and 9.8 − 8.5 = 1.3G), so it would be
13.7G.

Deep-narrow ablation (§4): the paper's ViT-S/16 (timm's 2020 vit_small_patch16_224) is printed as
48.6M / 10.1G; the architecture named has 48.75M / 9.89G (timm lists the same 48.75M), so "≈". The
deep-narrow model is about half of it (0.50× params, 0.52× MACs), as the paper says; the paper gives no
size for the shallow-wide one. Their heads and MLP ratio are our choice (presets.py) and change
neither count.
"""}


def _row(name: str) -> str:
    preset = PRESETS[name]
    spec = resolve_model(name)  # 224 px, 1000 classes, 3 channels (MODEL_DEFAULTS)
    cost = model_cost(spec)
    pub, approx = preset["published"], preset.get("paper_size", {})  # approx: not to the printed digit
    tok = spec.t2t_layer if spec.tokenizer == "t2t" else f"{spec.tokenizer} {spec.patch_size}"

    def compare(ours: float, key: str, scale: float, unit: str) -> str:
        theirs = pub.get(key, approx.get(key))
        if theirs is None:
            return f"{ours / scale:.3f}{unit} | – | –"
        about = "≈" if key in approx else ""
        return (f"{ours / scale:.3f}{unit} | {about}{theirs / scale:g}{unit} | "
                f"{(ours - theirs) / scale:+.3f}{unit} ({100 * (ours - theirs) / theirs:+.1f}%)")

    top1 = f"{pub['top1']:g}" if "top1" in pub else "–"
    return (f"| {name} | {tok} | {spec.embed_dim} | {spec.depth} | {spec.num_heads} | {spec.mlp_ratio:g} | "
            f"{compare(cost.params, 'params', 1e6, 'M')} | {compare(cost.macs, 'macs', 1e9, 'G')} | {top1} |")


def table(names: list[str]) -> str:
    head = ("| preset | tokenizer / T2T layer | D | depth | heads | MLP ratio | params | published | Δ | "
            "MACs | published | Δ | published top-1 |\n" + "|---" * 13 + "|\n")
    return head + "\n".join(_row(n) for n in names) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("presets", nargs="*", help="preset names (see `vitstudy list`)")
    p.add_argument("--group", choices=sorted(GROUPS), help="every preset of a group")
    p.add_argument("--out", type=Path, help="write the table here (Markdown) as well as printing it")
    args = p.parse_args(argv)
    names = args.presets + (GROUPS[args.group] if args.group else [])
    if not names:
        p.error("give preset names or --group")
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        p.error(f"unknown preset(s) {', '.join(unknown)}")
    text = table(names)
    if args.group:
        text = NOTES[args.group] + "\n" + text
    command = "python scripts/profile_table.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text += f"\nGenerated by `{command}`.\n"
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

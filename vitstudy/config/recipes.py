"""Named training recipes: the published settings of a paper's training, as manifest defaults.

`train.recipe: deit` (or `t2t`) fills every option the recipe fixes that the manifest leaves unset;
an option the manifest sets explicitly always wins, so `recipe: deit` with `train.epochs: 30` is DeiT's
recipe cut to 30 epochs. The recipe name stays in the spec (it documents the run) and the options it
filled are ordinary spec values, so two cells that end up with the same settings share a run id only if
they also name the same recipe. No torch import here: manifests are validated without it.

Sources (../shared/PAPERS.md): DeiT (Touvron et al. 2021), as used unchanged by Melas-Kyriazi 2021 and
Zhou et al. 2023: 300 epochs, AdamW lr 5e-4 × batch/512, wd 0.05, 5 warm-up epochs, cosine to 1e-5,
drop-path 0.1, RandAugment rand-m9-mstd0.5-inc1, colour jitter 0.4, label smoothing 0.1, Mixup 0.8,
CutMix 1.0, random erasing 0.25, repeated augmentation (3 repeats), EMA 0.99996. T2T-ViT (Yuan et al.
2021): DeiT's augmentation with 310 epochs (300 + 10 cool-down at the minimum lr), 10 warm-up epochs,
lr 5e-4 (1e-3 for T2T-ViT-7/10/12), wd 0.05 (0.03 for 7/10/12, 0.065 for 19/24).
"""

from __future__ import annotations

from typing import Any

# section -> field -> value; the lr is the rate at `lr_base_batch` images per optimizer step
DEIT: dict[str, dict[str, Any]] = {
    "model": {"drop_path": 0.1},
    "train": {
        "epochs": 300, "lr": 5e-4, "lr_base_batch": 512, "min_lr": 1e-5, "weight_decay": 0.05,
        "warmup_epochs": 5, "label_smoothing": 0.1, "mixup": 0.8, "cutmix": 1.0,
        "randaugment": "rand-m9-mstd0.5-inc1", "color_jitter": 0.4, "random_erasing": 0.25,
        "repeated_aug": 3, "ema_decay": 0.99996,
    },
}

_T2T_SMALL = ("t2t_vit_7", "t2t_vit_10", "t2t_vit_12")
_T2T_LARGE = ("t2t_vit_19", "t2t_vit_24", "t2t_vit_t_19", "t2t_vit_t_24")


def _t2t(preset: str | None) -> dict[str, dict[str, Any]]:
    small, large = preset in _T2T_SMALL, preset in _T2T_LARGE
    return {
        "model": DEIT["model"],
        "train": {**DEIT["train"], "epochs": 310, "cooldown_epochs": 10, "warmup_epochs": 10,
                  "lr": 1e-3 if small else 5e-4, "weight_decay": 0.03 if small else 0.065 if large else 0.05},
    }


RECIPES = {
    "deit": lambda preset: DEIT,
    "t2t": _t2t,
}


def recipe_values(name: str, preset: str | None) -> dict[str, dict[str, Any]]:
    """The settings recipe `name` fixes, per section (some depend on the model preset)."""
    return RECIPES[name](preset)


def apply_recipe(sections: dict[str, dict], explicit: dict[str, set[str]]) -> dict[str, tuple]:
    """Fill `sections` (model/data/train dicts, changed in place) with the recipe named in
    sections["train"]["recipe"], skipping fields in `explicit[section]`. Returns
    {(section, field): ("recipe", name)} for the fields it set (their origin, for error messages)."""
    name = sections.get("train", {}).get("recipe")
    if name not in RECIPES:  # unset, or unknown: the spec's validation names the valid recipes
        return {}
    filled = {}
    for section, values in recipe_values(name, sections.get("model", {}).get("preset")).items():
        for field, value in values.items():
            if field not in explicit.get(section, set()):
                sections.setdefault(section, {})[field] = value
                filled[(section, field)] = ("recipe", name, section, field)
    return filled

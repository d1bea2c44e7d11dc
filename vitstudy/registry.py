"""Name → component registries for every ablation axis, with "did you mean" errors.

The registries hold *names* and *import paths*, not imported objects, so the manifest layer can
validate a grid (and `vitstudy plan` / `vitstudy list` can answer) without importing torch. A component
is imported only when a model is actually built: `MIXERS.get("attention")` returns the class.

Adding a component is one new file plus one `register(...)` line below.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping


class UnknownNameError(ValueError, KeyError):
    """A registry name that does not exist; the message lists the valid names."""

    def __init__(self, kind: str, name: object, choices: list[str]):
        self.kind, self.name, self.choices = kind, name, choices
        close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        self.message = f"unknown {kind} '{name}'{hint}; valid: {', '.join(choices)}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:attribute", imported on first use
    summary: str
    paper: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


class Registry:
    """An ordered table of named components of one kind (mixer, normaliser, ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: str, summary: str, paper: str = "", **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = Entry(name, target, summary, paper, dict(meta))

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.kind, name, self.names()) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def get(self, name: str) -> Any:
        """Import and return the registered object (a class or function)."""
        module, _, attr = self.entry(name).target.partition(":")
        return getattr(importlib.import_module(module), attr)


MIXERS = Registry("mixer")
NORMALIZERS = Registry("normalizer")
POSITIONS = Registry("position")
TOKENIZERS = Registry("tokenizer")
HEADS = Registry("head")
DATASETS = Registry("dataset")

# --- token mixers: forward(x: (B, N, C), grid: (H, W)) -> (B, N, C) ------------------------------
MIXERS.register(
    "attention", "vitstudy.models.mixers.attention:Attention",
    "multi-head self-attention with a pluggable score normaliser",
    "Dosovitskiy et al. 2021 (ViT)", uses_normalizer=True, uses_heads=True,
)

# --- attention normalisers: scores (B, h, N, N) -> weights ---------------------------------------
NORMALIZERS.register(
    "softmax", "vitstudy.models.normalizers:Softmax",
    "softmax over the key axis (with temperature); the only one with a fused kernel",
    "Vaswani et al. 2017",
)

# --- position encodings ---------------------------------------------------------------------------
POSITIONS.register("learned", "vitstudy.models.position:LearnedPosition",
                   "learned absolute embedding, one vector per token (class token included)",
                   "Dosovitskiy et al. 2021 (ViT)")
POSITIONS.register("sinusoid", "vitstudy.models.position:SinusoidPosition",
                   "fixed 1-D sinusoid table over token index (class token included)",
                   "Vaswani et al. 2017; Yuan et al. 2021 (T2T)")
POSITIONS.register("none", "vitstudy.models.position:NoPosition",
                   "no absolute position information", "")

# --- tokenizers: image (B, C, H, W) -> tokens (B, N, D) on a grid ----------------------------------
TOKENIZERS.register("patch", "vitstudy.models.tokenizers:PatchEmbed",
                    "hard split into non-overlapping p×p patches, linear projection (a strided conv)",
                    "Dosovitskiy et al. 2021 (ViT)")

# --- heads -----------------------------------------------------------------------------------------
HEADS.register("cls", "vitstudy.models.vit:ClassTokenPool",
               "class token prepended to the sequence; its final state is classified",
               "Dosovitskiy et al. 2021 (ViT)", class_token=True)
HEADS.register("gap", "vitstudy.models.vit:AveragePool",
               "global average pool over the patch tokens, no class token",
               "Li et al. 2021; Zhou et al. 2023", class_token=False)

# --- datasets: meta tells the model builder what the images look like ------------------------------
DATASETS.register("digits", "vitstudy.data:DigitsDataModule",
                  "scikit-learn's 1,797 real 8×8 handwritten digits; ships offline",
                  "Alpaydin & Kaynak 1998 (UCI)", num_classes=10, in_chans=1, img_size=8)
DATASETS.register("synthetic", "vitstudy.data:SyntheticDataModule",
                  "class prototypes plus noise: learnable, deterministic, any size (smoke tests)",
                  "", num_classes=10, in_chans=3, img_size=32)

"""Name → component registries for every ablation axis, with "did you mean" errors.

The registries hold *names* and *import paths*, not imported objects, so the manifest layer can
validate a grid (and `vitstudy plan` / `vitstudy list` can answer) without importing torch. A component
is imported only when a model is actually built: `MIXERS.get("attention")` returns the class.

Adding a component (a mixer, normaliser or channel mixer) takes three edits: its file; one
`register(...)` line below whose meta `options` names the constructor keywords it takes from the spec
(same names as the ModelSpec fields); and, for an option no component had before, a ModelSpec field
with a default (vitstudy/config/model_spec.py). tests/models/test_registry.py checks every entry's
`options` against its constructor's signature, both ways.
"""

from __future__ import annotations

import difflib
import importlib
import reprlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping


def unknown_name(kind: str, name: object, valid: Iterable[object]) -> str:
    """"unknown <kind> '<name>' (did you mean '<closest>'?); valid: ...": the one did-you-mean message
    (registry names, manifest keys, spec options). It never suggests `name` itself, and quotes at most
    60 characters of it."""
    valid = [str(v) for v in valid]
    text = name if isinstance(name, str) else reprlib.repr(name)
    text = text if len(text) <= 60 else text[:57] + "..."
    others = [v for v in valid if v != text]
    close = difflib.get_close_matches(text, others, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} '{text}'{hint}; valid: {', '.join(valid)}"


class UnknownNameError(ValueError, KeyError):
    """A registry name that does not exist; the message lists the valid names."""

    def __init__(self, kind: str, name: object, choices: list[str]):
        self.kind, self.name, self.choices = kind, name, choices
        self.message = unknown_name(kind, name, choices)
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
CHANNEL_MIXERS = Registry("channel mixer")
POSITIONS = Registry("position")
TOKENIZERS = Registry("tokenizer")
HEADS = Registry("head")
DATASETS = Registry("dataset")
REGISTRIES = (MIXERS, NORMALIZERS, CHANNEL_MIXERS, TOKENIZERS, POSITIONS, HEADS, DATASETS)  # for `list`

# --- token mixers: forward(x: (B, N, C), grid: (H, W)) -> (B, N, C) ------------------------------
# meta: options = the ModelSpec fields the constructor takes (same names); normalizer = takes one;
# rel_pos = default of the relative position option (None: not supported); mixes_prefix = whether
# the class token is mixed with the patch tokens (a `cls` head needs it).
MIXERS.register(
    "attention", "vitstudy.models.mixers.attention:Attention",
    "multi-head self-attention with a pluggable score normaliser",
    "Dosovitskiy et al. 2021 (ViT)", options=("num_heads", "qkv_bias", "attn_path", "head_dim", "null_key"),
    normalizer=True,
    rel_pos=False, mixes_prefix=True,
)
MIXERS.register(
    "patch_mlp", "vitstudy.models.mixers.patch_mlp:PatchMLP",
    "feed-forward layer over the token axis (T → rT → T), token-axis LayerNorm; fixed token count",
    "Melas-Kyriazi 2021", options=("token_mlp_ratio",), mixes_prefix=True,
)
MIXERS.register(
    "dwsa", "vitstudy.models.mixers.dwsa:DepthwiseSelfAttention",
    "depthwise self-attention: q ⊙ mean(k) + relative-position conv of k; global or windowed",
    "Zhou et al. 2023", options=("num_heads", "qkv_bias", "window"), rel_pos=True, mixes_prefix=True,
)
MIXERS.register(
    "conv", "vitstudy.models.mixers.conv:ConvMixer",
    "K×K convolution over the token grid (full or depthwise); the conv phase of CMHSA",
    "Li et al. 2021", options=("kernel_size", "conv_groups"), mixes_prefix=False,
)
MIXERS.register(
    "pool", "vitstudy.models.mixers.pool:PoolMixer",
    "average pooling minus identity, parameter-free",
    "Yu et al. 2022 (PoolFormer)", options=("pool_size",), mixes_prefix=False,
)
MIXERS.register(
    "identity", "vitstudy.models.mixers.identity:IdentityMixer",
    "no token mixing (the mixer returns its input): the floor of the mixer axis",
    "Yu et al. 2023 (MetaFormer baselines)", options=(), mixes_prefix=False,
)

# --- attention normalisers: scores (B, h, N, N) -> weights -----------------------------------------
NORMALIZERS.register("softmax", "vitstudy.models.normalizers:Softmax",
                     "softmax over the key axis, with temperature; the only one with a fused kernel",
                     "Vaswani et al. 2017", options=("temperature",))
NORMALIZERS.register("relu", "vitstudy.models.normalizers:ReLU", "relu(s) / N",
                     "Wortsman et al. 2023; Zhou et al. 2023", options=())
NORMALIZERS.register("relu2", "vitstudy.models.normalizers:ReLU2", "relu(s)² / N",
                     "Wortsman et al. 2023", options=())
NORMALIZERS.register("softplus", "vitstudy.models.normalizers:Softplus", "softplus(s) / N",
                     "Wortsman et al. 2023", options=())
NORMALIZERS.register("gelu", "vitstudy.models.normalizers:GELU", "gelu(s) / N",
                     "Wortsman et al. 2023", options=())
NORMALIZERS.register("sigmoid", "vitstudy.models.normalizers:Sigmoid",
                     "sigmoid(s + b), b = −log N by default, optionally learned per head",
                     "Ramapuram et al. 2024", options=("sigmoid_bias", "learnable_bias"))
NORMALIZERS.register("layernorm", "vitstudy.models.normalizers:LayerNorm",
                     "each query's scores standardised over the key axis (zero mean, unit variance)",
                     "Zhou et al. 2023", options=())

# --- channel mixers: the block's second sub-layer ---------------------------------------------------
CHANNEL_MIXERS.register("mlp", "vitstudy.models.channel_mixers:FeatureMLP",
                        "feed-forward layer over the features, C → rC → C, GELU", "Vaswani et al. 2017",
                        options=("mlp_ratio",))
CHANNEL_MIXERS.register("attention", "vitstudy.models.channel_mixers:FeatureAttention",
                        "attention over the feature axis (one head), token-axis LayerNorm",
                        "Melas-Kyriazi 2021 §3.4 (attention only)", options=())
CHANNEL_MIXERS.register("none", "vitstudy.models.channel_mixers:none",
                        "no channel mixer: blocks are token mixing only", "", options=())

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
TOKENIZERS.register("t2t", "vitstudy.models.t2t:T2TEmbed",
                    "tokens-to-token: overlapping soft splits, a Performer/transformer layer between",
                    "Yuan et al. 2021 (T2T-ViT)", soft_split=True)

# --- heads -----------------------------------------------------------------------------------------
HEADS.register("cls", "vitstudy.models.vit:ClassTokenPool",
               "class token prepended to the sequence; its final state is classified",
               "Dosovitskiy et al. 2021 (ViT)", class_token=True)
HEADS.register("gap", "vitstudy.models.vit:AveragePool",
               "global average pool over the patch tokens, no class token",
               "Li et al. 2021; Zhou et al. 2023", class_token=False)

# --- datasets: meta tells the model builder what the images look like ------------------------------
DATASETS.register("digits", "vitstudy.data.digits:DigitsDataModule",
                  "scikit-learn's 1,797 real 8×8 handwritten digits; ships offline",
                  "Alpaydin & Kaynak 1998 (UCI)", num_classes=10, in_chans=1, img_size=8)
DATASETS.register("imagenet", "vitstudy.data.folder:ImageNetDataModule",
                  "ImageNet-1k from <root>/imagenet/{train,val}/<wnid>/ (not downloadable: bring it)",
                  "Deng et al. 2009", num_classes=1000, in_chans=3, img_size=224, on_disk=True)
DATASETS.register("mnist", "vitstudy.data.mnist:MnistDataModule",
                  "MNIST 28×28 digits as device tensors; downloads into data.root when online",
                  "LeCun et al. 1998", num_classes=10, in_chans=1, img_size=28, on_disk=True)
DATASETS.register("fashion_mnist", "vitstudy.data.mnist:FashionMnistDataModule",
                  "Fashion-MNIST 28×28 clothing as device tensors; downloads into data.root when online",
                  "Xiao et al. 2017", num_classes=10, in_chans=1, img_size=28, on_disk=True)
# num_classes None: the folder decides, so the manifest must set model.num_classes (checked at setup)
DATASETS.register("imagefolder", "vitstudy.data.folder:image_folder",
                  "data.root/{train,val[,test]}/<class>/*.png|jpg: on the device when small, else workers",
                  "", num_classes=None, in_chans=3, img_size=None, on_disk=True)
DATASETS.register("cifar10", "vitstudy.data.cifar:CifarDataModule",
                  "CIFAR-10 as device tensors, crop+flip in batches; downloads into data.root when online",
                  "Krizhevsky 2009", num_classes=10, in_chans=3, img_size=32, on_disk=True)
DATASETS.register("cifar100", "vitstudy.data.cifar:Cifar100DataModule",
                  "CIFAR-100 as device tensors, crop+flip in batches; downloads into data.root when online",
                  "Krizhevsky 2009; Li et al. 2021 (CMHSA)", num_classes=100, in_chans=3, img_size=32,
                  on_disk=True)
DATASETS.register("synthetic", "vitstudy.data.digits:SyntheticDataModule",
                  "class prototypes plus noise: learnable, deterministic, any size (smoke tests)",
                  "", num_classes=10, in_chans=3, img_size=32)

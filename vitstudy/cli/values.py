"""What each `vitstudy` option's value may be: argparse types that turn the text into the value or refuse
it, so that a malformed value ends as `vitstudy CMD: error: argument --flag: <what is wrong and what would
be valid>` with exit status 2, before anything is read, imported or written.

Numbers are plain digits (not `+1`, `1.0`, `1e3` or `²`), finite, and within a range; lists have no empty
item and no repeated one; names are names. Checks that need the grid (is `head` one of its axes?) come
after the manifest or results are read and before anything runs or is written (vitstudy.cli.info); paths
are checked when the command starts (vitstudy.cli.paths).
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Callable

from vitstudy.config.errors import shown
from vitstudy.results.runs import AT_EPOCH, COST, NAMES

Invalid = argparse.ArgumentTypeError

DIGITS = re.compile(r"[0-9]{1,18}")  # more digits than this is out of every range below
AXIS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")  # head, model.head
WORD = re.compile(r"[^\s\x00-\x1f\x7f]+")  # no space or control character: a newline would end an sbatch line
SBATCH_KEY = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
DEVICE = re.compile(r"(cpu|cuda|mps)(:[0-9]{1,3})?")

# the metrics a record holds (vitstudy.training.system logs them; `ema_`: with train.ema_decay) and those a
# best-validation epoch holds (`best:`) or TensorBoard holds per epoch (`@epoch<k>`)
RECORDED = (*(k for k in NAMES if k not in COST),
            *(f"{split}/ema_{m}" for split in ("val", "test") for m in ("acc1", "acc5", "loss")))
AT_BEST = ("epoch", *(k for k in RECORDED if not k.startswith("train/")))
PER_EPOCH = tuple(k for k in RECORDED if not k.startswith("test/"))


def count(low: int, high: int) -> Callable[[str], int]:
    """A whole number from `low` to `high`."""
    kind = "a positive integer" if low == 1 else f"a whole number >= {low}"

    def parse(text: str) -> int:
        if not DIGITS.fullmatch(text) or int(text) < low:
            raise Invalid(f"{shown(text)} is not {kind}")
        if int(text) > high:
            raise Invalid(f"{shown(text)} is more than {high:,}, the most it may be")
        return int(text)

    parse.__name__ = "count"
    return parse


def amount(high: float) -> Callable[[str], float]:
    """A finite number above 0, at most `high`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise Invalid(f"{shown(text)} is not a number") from None
        if not (math.isfinite(value) and 0 < value <= high):
            raise Invalid(f"{shown(text)} is not a number above 0 and at most {high:,.0f}")
        return value

    parse.__name__ = "amount"
    return parse


def items(text: str, example: str) -> list[str]:
    """The comma-separated items of `text` (spaces around them dropped); none empty, none twice."""
    out = [x.strip() for x in text.split(",")]
    if not all(out):
        raise Invalid(f"{shown(text)} has an empty item; give them separated by commas, e.g. {example}")
    twice = [x for i, x in enumerate(out) if x in out[:i]]
    if twice:
        raise Invalid(f"{shown(twice[0])} is given twice")
    return out


def axes(text: str) -> list[str]:
    """`--rows`, `--cols`: axis names; which axes exist is known once the runs are read."""
    names = items(text, "position,head")
    for name in names:
        if not AXIS.fullmatch(name):
            raise Invalid(f"{shown(name)} is not an axis name: a key such as head or model.head")
    return names


def metrics(text: str) -> list[str]:
    """`--metrics`: what a record holds, at the end (test/acc1), at the best-validation epoch
    (best:test/acc1), at an epoch from 1 (val/acc1@epoch3), or a cost (params)."""
    names = items(text, "test/acc1,best:test/acc1")
    for name in names:
        if not _is_metric(name):
            raise Invalid(f"unknown metric {shown(name)}; valid: {', '.join(RECORDED + COST)}; best:M for M "
                          f"at the best-validation epoch ({', '.join(AT_BEST)}); M@epochK for M at epoch K, "
                          f"counted from 1 ({', '.join(PER_EPOCH)})")
    return names


def _is_metric(name: str) -> bool:
    if name.startswith("best:"):
        return name.removeprefix("best:") in AT_BEST
    if at := AT_EPOCH.fullmatch(name):
        return at["tag"] in PER_EPOCH
    return name in RECORDED or name in COST


def baseline(text: str) -> dict[str, str]:
    """`--baseline`: the reference row as axis=value pairs separated by commas."""
    pairs = {}
    for item in items(text, "head=cls,position=learned"):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not AXIS.fullmatch(key) or not value:
            raise Invalid(f"{shown(item)} is not AXIS=VALUE; give the reference row as axis=value pairs "
                          "separated by commas, e.g. head=cls,position=learned")
        if key in pairs:
            raise Invalid(f"the axis {shown(key)} is given twice; give each axis once, e.g. "
                          "head=cls,position=learned")
        pairs[key] = value
    return pairs


def word(text: str) -> str:
    """A SLURM or Ray setting (partition, account, qos, constraint, address): no space, no control
    character."""
    if not WORD.fullmatch(text):
        raise Invalid(f"{shown(text)} is not a name: give one without spaces or control characters")
    return text


def sbatch(text: str) -> tuple[str, str | bool]:
    """`--sbatch KEY=VALUE` (or KEY, for a flag) as (key, value)."""
    key, sep, value = text.partition("=")
    key = key.removeprefix("--")
    if not SBATCH_KEY.fullmatch(key) or (sep and not WORD.fullmatch(value)):
        raise Invalid(f"{shown(text)}: use KEY=VALUE (or KEY for a flag), an sbatch option's name such as "
                      "mail-type and a value without spaces or control characters")
    return key, value if sep else True


def minutes(text: str) -> int:
    """`--time`: a SLURM time limit (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in whole minutes, at least 1."""
    from vitstudy.grid.executors.slurm import parse_time

    try:
        value = parse_time(text) if text.isascii() and WORD.fullmatch(text) else 0
    except ValueError:
        value = 0
    if not 1 <= value <= 10**8:
        raise Invalid(f"{shown(text)} is not a time limit: give minutes or [D-]H:M:S, at least one minute")
    return value


def pack(text: str) -> str | int:
    """`--pack`: auto, off or a number of members >= 1 (vitstudy.grid.packing)."""
    from vitstudy.grid.packing import parse_mode

    try:
        return parse_mode(text if text.isascii() else "")
    except ValueError:
        raise Invalid(f"auto, off or a number of members >= 1, got {shown(text)}") from None


def device(text: str) -> str:
    """`profile --device`: a torch device name."""
    if not DEVICE.fullmatch(text):
        raise Invalid(f"{shown(text)} is not a device: give cpu, cuda, cuda:N or mps")
    return text

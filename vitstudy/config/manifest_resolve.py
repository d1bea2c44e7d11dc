"""One cell's RunSpec from a manifest's pieces, and a phase-2 cell's from its phase 1.

    model = MODEL_DEFAULTS ⊕ the dataset's shape ⊕ the preset ⊕ defaults ⊕ the cell's axis values ⊕ smoke

and likewise (without the first three) for the data, train and log sections; a named recipe fills what
is still unset (vitstudy.config.recipes). An option the cell's axis values or smoke overrides set but
none of its components reads keeps the value it has without them (model_spec.canonical_options), so it
cannot give one model two run ids. Every problem is raised as a CellError naming the YAML path of the
value at fault (the default, the axis value, the smoke override or the recipe that set it).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from vitstudy.config.errors import CellError, explain
from vitstudy.config.model_spec import MODEL_DEFAULTS, canonical_options
from vitstudy.config.phases import transferred_model
from vitstudy.config.presets import PRESETS
from vitstudy.config.recipes import apply_recipe
from vitstudy.config.spec import SECTIONS, RunSpec
from vitstudy.registry import DATASETS, UnknownNameError

Origins = dict[tuple[str, str], tuple]  # (section, field) -> the YAML path that set its value


def resolve(name: str, defaults: dict, overrides: dict[str, tuple[Any, tuple]], seed: int,
            smoke: dict) -> RunSpec:
    """Merge defaults, one cell's axis values ({key: (value, yaml path)}) and the smoke overrides into a
    validated RunSpec of grid `name`."""
    sections, origin = _merge(defaults, overrides, smoke)
    problems: list[tuple[tuple, str]] = []
    unset = _unset_model(sections, defaults.get("model", {}), origin, problems)
    sections["model"] = canonical_options({**unset, **sections["model"]}, unset)
    dataset = sections["data"].get("dataset")
    classes_unknown = sections["model"].get("num_classes", 0) is None  # imagefolder: its folders fix them
    if classes_unknown:
        problems.append((origin.get(("data", "dataset"), ("defaults", "data", "dataset")),
                         f"dataset '{dataset}' takes its classes from its folders: set model.num_classes"))
    try:
        spec = RunSpec(grid=name, seed=seed, **sections)
    except ValidationError as e:
        problems += _located(e, origin, skip_classes=classes_unknown)
    if problems:
        raise CellError(problems)
    return spec


def _merge(defaults: dict, overrides: dict[str, tuple[Any, tuple]], smoke: dict) -> tuple[dict, Origins]:
    """The sections as the manifest sets them (defaults, axis values, smoke, then the recipe's fill)."""
    sections = {s: dict(defaults.get(s, {})) for s in SECTIONS}
    origin: Origins = {(s, f): ("defaults", s, f) for s, fields in sections.items() for f in fields}
    for key, (value, path) in overrides.items():
        s, f = key.split(".", 1)
        sections[s][f] = value
        origin[(s, f)] = path
    for s, fields in smoke.items():
        for f, value in fields.items():
            sections[s][f] = value
            origin[(s, f)] = ("smoke", s, f)
    # a named recipe fills what the manifest leaves unset (vitstudy.config.recipes); explicit values win
    for key in apply_recipe(sections, {s: set(fields) for s, fields in sections.items()}):
        origin[key] = origin[("train", "recipe")]
    return sections, origin


def _unset_model(sections: dict, defaults_model: dict, origin: Origins, problems: list) -> dict[str, Any]:
    """The model fields' values where the cell's own axis values and smoke overrides leave them:
    MODEL_DEFAULTS, the dataset's shape, the (cell's) preset, the manifest's defaults."""
    unset = dict(MODEL_DEFAULTS)
    dataset = sections["data"].get("dataset")
    if isinstance(dataset, str) and dataset in DATASETS:
        meta = DATASETS.entry(dataset).meta
        unset.update(num_classes=meta["num_classes"], in_chans=meta["in_chans"])
    preset = sections["model"].get("preset")
    if preset is not None:
        if isinstance(preset, str) and preset in PRESETS:
            unset.update(PRESETS[preset]["args"])
        else:
            message = str(UnknownNameError("preset", preset, list(PRESETS)))
            problems.append((origin[("model", "preset")], message))
    return {**unset, **defaults_model}


def _located(error: ValidationError, origin: Origins, skip_classes: bool) -> list[tuple[tuple, str]]:
    """Each validation error at the YAML path of the value at fault."""
    out = []
    for err in error.errors():
        loc = tuple(str(x) for x in err["loc"])
        if skip_classes and loc[:2] == ("model", "num_classes"):
            continue  # said already, with what to do
        section, fld = loc[0], (loc[1] if len(loc) > 1 else None)
        path = origin.get((section, fld), ("defaults",) + loc) if fld else ("defaults", section)
        out.append((path, explain(err, SECTIONS.get(section))))
    return out


def next_phase(first: dict, run_id: str, rule: dict, smoke: dict, index: int) -> RunSpec:
    """Phase 2's spec from phase 1's resolved spec (JSON data), its run id and phase rule `index`:
    the transfer's model, the rule's sections over it, the smoke overrides but the model's."""
    sections = {s: dict(first.get(s, {})) for s in SECTIONS}
    try:
        sections["model"] = transferred_model(sections["model"], rule["transfer"])
    except ValueError as e:
        raise CellError([(("phases", index, "transfer"), str(e))]) from None
    for s, fields in rule["sections"].items():
        sections[s].update(fields)
    sections["train"].update(init_from=run_id, transfer=rule["transfer"])
    for s, fields in smoke.items():
        if s != "model":  # phase 1's model already has the smoke overrides; the transfer derives from it
            sections[s].update(fields)
    try:
        return RunSpec(grid=first["grid"], seed=first["seed"], **sections)
    except ValidationError as e:
        raise CellError([(("phases", index) + tuple(str(x) for x in err["loc"][:2]),
                          "phase 2: " + explain(err, SECTIONS.get(str(err["loc"][0]))))
                         for err in e.errors()]) from None

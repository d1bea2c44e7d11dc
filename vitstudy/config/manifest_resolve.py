"""One cell's RunSpec from a manifest's pieces, and a phase-2 cell's from its phase 1.

    model = MODEL_DEFAULTS ⊕ the dataset's shape ⊕ the preset ⊕ defaults ⊕ the cell's axis values ⊕ smoke

and likewise (without the first three) for the data, train and log sections; a named recipe fills what
is still unset (vitstudy.config.recipes). An option the cell's axis values or smoke overrides set but
none of its components reads keeps the value it has without them (model_spec.canonical_options), so it
cannot give one model two run ids. Every problem is raised as a CellError naming the YAML path of the
value at fault (the default, the axis value, the smoke override, the recipe, the preset or the dataset
that set it); a check across fields (errors.SpecError) is reported at the value among its fields that
is most particular to the cell: a smoke override, else an axis value, else a default, else the preset
or dataset that gave it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from vitstudy.config.errors import CellError, SpecError, explain
from vitstudy.config.model_spec import MODEL_DEFAULTS, canonical_options
from vitstudy.config.phases import transferred_model
from vitstudy.config.presets import PRESETS
from vitstudy.config.recipes import apply_recipe
from vitstudy.config.spec import SECTIONS, RunSpec, unknown_option
from vitstudy.registry import DATASETS, UnknownNameError

Origins = dict[tuple[str, str], tuple]  # (section, field) -> the YAML path that set its value
# how particular to a cell a value set at a YAML path is (its first key): smoke over axes over defaults
_RANK = {"smoke": 3, "grid": 2, "budget": 2, "tune": 2, "phases": 2, "defaults": 1}


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
        problems += _located(e, origin, derived=_derived(sections, origin), skip_classes=classes_unknown)
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


def _derived(sections: dict, origin: Origins) -> Origins:
    """Where the model fields the manifest leaves unset come from: the preset's path for the preset's,
    the dataset's path for the dataset's classes and channels."""
    preset = sections["model"].get("preset")
    out: Origins = {}
    if ("data", "dataset") in origin:
        out.update({("model", f): origin[("data", "dataset")] for f in ("num_classes", "in_chans")})
    if isinstance(preset, str) and preset in PRESETS:
        out.update({("model", f): origin[("model", "preset")] for f in PRESETS[preset]["args"]})
    return out


def _located(error: ValidationError, origin: Origins, derived: Origins,
             skip_classes: bool = False) -> list[tuple[tuple, str]]:
    """Each validation error at the YAML path of the value at fault: a field's own value (an item of a
    list at its index), or for a check across fields the most particular of their values."""
    out = []
    for err in error.errors():
        loc = err["loc"]
        if skip_classes and loc[:2] == ("model", "num_classes"):
            continue  # said already, with what to do
        section = str(loc[0]) if loc else None
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, SpecError):
            fields = [tuple(f.split(".", 1)) if "." in f else (section, f) for f in cause.fields]
            path = _at_fault(fields, origin, derived)
        elif len(loc) > 1:
            key = (section, str(loc[1]))
            items = tuple(x for x in loc[2:] if isinstance(x, int))  # a list's item, set where the list is
            path = origin[key] + items if key in origin else derived.get(key, ("defaults",) + key)
        else:
            path = ("defaults", section) if section else ("defaults",)
        if err["type"] == "extra_forbidden" and section in SECTIONS:
            out.append((path, unknown_option(section, str(loc[-1]))))  # another section's, or misspelt
        else:
            out.append((path, explain(err, SECTIONS.get(section))))
    return out


def _at_fault(fields: list[tuple], origin: Origins, derived: Origins) -> tuple:
    """The YAML path, among `fields`' values, most particular to the cell (the first of equals)."""
    def rank(key: tuple) -> float:
        if key in origin:
            return _RANK.get(origin[key][0], 1) + 0.5  # set at this field, not through a preset or dataset
        return _RANK.get(derived[key][0], 1) if key in derived else 0

    best = max(fields, key=rank)
    return origin.get(best) or derived.get(best) or ("defaults", best[0])


def next_phase(first: dict, run_id: str, rule: dict, smoke: dict, index: int) -> RunSpec:
    """Phase 2's spec from phase 1's resolved spec (JSON data), its run id and phase rule `index`:
    the transfer's model, the rule's sections over it, the smoke overrides but the model's. A problem is
    reported at the rule's own value that caused it, else at the rule."""
    at = ("phases", index)
    sections = {s: dict(first.get(s, {})) for s in SECTIONS}
    try:
        sections["model"] = transferred_model(sections["model"], rule["transfer"])
    except ValueError as e:
        raise CellError([(at + ("transfer",), str(e))]) from None
    origin: Origins = {("model", f): at + ("transfer",) for f, v in sections["model"].items()
                       if first["model"].get(f) != v}
    for s, fields in rule["sections"].items():
        sections[s].update(fields)
        origin.update({(s, f): at + (s, f) for f in fields})
    sections["train"].update(init_from=run_id, transfer=rule["transfer"])
    for s, fields in smoke.items():
        if s != "model":  # phase 1's model already has the smoke overrides; the transfer derives from it
            sections[s].update(fields)
            origin.update({(s, f): ("smoke", s, f) for f in fields})
    try:
        return RunSpec(grid=first["grid"], seed=first["seed"], **sections)
    except ValidationError as e:
        rest = {(s, f): at for s in SECTIONS for f in SECTIONS[s].model_fields}
        raise CellError([(path, "phase 2: " + message)
                         for path, message in _located(e, origin, rest)]) from None

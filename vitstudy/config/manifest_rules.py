"""The parts of a manifest besides its grid, checked: sections, seeds, exclude and expect rules, phases,
and smoke overrides (their syntax: vitstudy.config.manifest's docstring).

Each function takes the raw YAML value and the `bad(path, message)` callback of the manifest's Problems,
reports everything wrong, and returns what is usable, so one reading lists every problem. A rule's
`match` is a mapping of resolved-spec keys (`section.field`, or `seed`) to a value or a list of values.
"""

from __future__ import annotations

import math
from typing import Any

from vitstudy.config.errors import Bad, shown
from vitstudy.config.phases import TRANSFERS
from vitstudy.config.spec import SECTIONS, SEEDS, rule_set, unknown_option
from vitstudy.registry import unknown_name


def section_dicts(value: Any, path: tuple, bad: Bad, what: str) -> dict[str, dict]:
    """{section: {field: value}} of `defaults`, `smoke` or a phase rule (sections: SECTIONS), without the
    fields only the manifest's rules set (each reported: vitstudy.config.spec.rule_set)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        bad(path, f"{what} is a mapping of sections ({', '.join(SECTIONS)})")
        return {}
    out = {}
    for section, fields in value.items():
        if section not in SECTIONS:
            bad(path + (section,), unknown_name("section", section, SECTIONS))
        elif not isinstance(fields, dict):
            bad(path + (section,), f"{section} is a mapping of {section} options, got {shown(fields)}")
        else:
            for f in fields:
                if rule_set(section, f):
                    bad(path + (section, f), rule_set(section, f))
            out[section] = {f: v for f, v in fields.items() if not rule_set(section, f)}
    return out


def seeds(value: Any, path: tuple, bad: Bad) -> list[int]:
    if not (isinstance(value, list) and value and all(type(s) is int and 0 <= s < SEEDS for s in value)):
        bad(path, f"{shown(value)}: seeds is a non-empty list of non-negative integers below 2³² "
                  f"({SEEDS:,}), e.g. [0, 1, 2]")
        return []
    if len(set(value)) != len(value):
        bad(path, f"{shown(value)} repeats a seed")
    return value


def smoke(value: Any, bad: Bad) -> tuple[dict[str, dict], list[int] | None, list[dict] | None]:
    """`smoke:`'s section overrides, its seeds and its expect rules (None: the manifest's). A smoke run
    trains far less than the grid, so a CI gate on it needs expectations of its own."""
    if value is None:
        return {}, None, None
    if not isinstance(value, dict):
        bad(("smoke",), f"smoke is a mapping of sections ({', '.join(SECTIONS)}), seeds and/or expect")
        return {}, None, None
    smoke_seeds = seeds(value["seeds"], ("smoke", "seeds"), bad) if "seeds" in value else None
    expects = rules(value["expect"], "expect", bad, at=("smoke", "expect")) if "expect" in value else None
    rest = {k: v for k, v in value.items() if k not in ("seeds", "expect")}
    sections = section_dicts(rest, ("smoke",), bad, "smoke")
    for section, fields in sections.items():
        for f in fields:
            if f not in SECTIONS[section].model_fields:
                bad(("smoke", section, f), unknown_option(section, f))
    return sections, smoke_seeds, expects


def rules(value: Any, kind: str, bad: Bad, at: tuple | None = None) -> list[dict]:
    """exclude: [{key: value, ...}]; expect: [{match: {key: value}, metric: number or {value: number,
    tolerance: number}, source: str}]. Each usable rule as {"match", "values" (metric -> float),
    "tolerance" (metric -> float, for the metrics given one), "source"}. `at`: where the list is (default:
    the top-level key `kind`)."""
    at = at or (kind,)
    if value is None:
        return []
    if not isinstance(value, list):
        example = ("[{model.head: cls, model.position: none}]" if kind == "exclude"
                   else "[{match: {model.preset: deit_tiny}, test/acc1: 72.2}]")
        bad(at, f"{kind} is a list of rules, e.g. {example}")
        return []
    out = []
    for i, rule in enumerate(value):
        if not isinstance(rule, dict) or (kind == "exclude" and not rule):
            bad(at + (i,), f"{shown(rule)}: a rule is a mapping" + (
                " of spec keys to values" if kind == "exclude" else " with `match` and metric values"))
            continue
        match = rule if kind == "exclude" else rule.get("match", {})
        mpath = at + (i,) if kind == "exclude" else at + (i, "match")
        if not isinstance(match, dict):
            bad(mpath, f"{shown(match)}: match is a mapping of spec keys (e.g. model.preset) to values")
            continue
        good = _match_keys_known(match, mpath, bad)
        values, tolerance, source = {}, {}, None
        if kind == "expect":
            values, tolerance, source, numbers_ok = _expect_values(rule, at + (i,), bad)
            good = good and numbers_ok
        if good:
            out.append({"match": match, "values": values, "tolerance": tolerance, "source": source})
    return out


def _match_keys_known(match: dict, path: tuple, bad: Bad) -> bool:
    """Whether every key of a rule's match is a spec key (reporting every one that is not)."""
    good = True
    for key in match:
        section, _, fld = str(key).partition(".")
        if key == "seed":
            continue
        if section not in SECTIONS or not fld:
            bad(path + (key,), f"keys are 'section.field' (section in {', '.join(SECTIONS)}) or 'seed'")
            good = False
        elif fld not in SECTIONS[section].model_fields:
            bad(path + (key,), unknown_option(section, fld))
            good = False
    return good


def _expect_values(rule: dict, path: tuple, bad: Bad) -> tuple[dict[str, float], dict[str, float],
                                                              str | None, bool]:
    """An expect rule's metric values, their tolerances (where given), its source, and whether every
    value is usable and there is at least one (reporting each problem)."""
    values, tolerance, source, ok = {}, {}, None, True
    for key, value in rule.items():
        if key == "match":
            continue
        if key == "source":
            if not isinstance(value, str):
                bad(path + (key,), f"{shown(value)}: source is a string (a citation)")
            source = str(value)
            continue
        number, margin = _expected_value(value, path + (key,), bad)
        if number is None:
            ok = False
            continue
        values[str(key)] = number
        if margin is not None:
            tolerance[str(key)] = margin
    if not values:
        bad(path, "an expect rule gives at least one metric value, e.g. test/acc1: 72.2")
        ok = False
    return values, tolerance, source, ok


EXPECTED_KEYS = ("value", "tolerance")  # an expected value given as a mapping


def _expected_value(value: Any, path: tuple, bad: Bad) -> tuple[float | None, float | None]:
    """A metric's expected value (None when unusable) and its tolerance (None when not given), from a
    number or {value: number, tolerance: number}, reporting each problem."""
    if not isinstance(value, dict):
        number = finite_number(value)
        if number is None:
            bad(path, f"{shown(value)}: an expected value is a finite number or {{value, tolerance}} (e.g. "
                      "test/acc1: 72.2, params: 5.7e6, test/acc1: {value: 72.2, tolerance: 0.5})")
        return number, None
    ok = True
    for key in value:
        if key not in EXPECTED_KEYS:
            bad(path + (key,), unknown_name("key of an expected value", key, EXPECTED_KEYS))
            ok = False
    number = finite_number(value.get("value"))
    if number is None:
        bad(path + ("value",), f"{shown(value.get('value'))}: value is a finite number, e.g. "
                               "{value: 72.2, tolerance: 0.5}")
        ok = False
    margin = finite_number(value["tolerance"]) if "tolerance" in value else None
    if "tolerance" in value and (margin is None or margin < 0):
        bad(path + ("tolerance",), f"{shown(value['tolerance'])}: a tolerance is a finite number ≥ 0, the "
                                   "largest |measured mean − value| that passes")
        ok = False
    return (number, margin) if ok else (None, None)


def finite_number(value: Any) -> float | None:
    """A finite number from an int or a float (the manifest's reader makes `5.7e6` a float), else None:
    a bool, a quoted number and an integer too large for a float are not numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def matches(match: dict, spec: dict) -> bool:
    """Whether a resolved spec (as JSON data) has every key's value; a list value means any of."""
    for key, want in match.items():
        section, _, fld = key.partition(".")
        have = _hashable(spec["seed"] if key == "seed" else spec.get(section, {}).get(fld))
        if not any(have == _hashable(w) for w in (want if isinstance(want, list) else [want])):
            return False
    return True


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def expected(expects: list[dict], semantic: dict,
             used: set) -> tuple[dict[str, float], dict[str, float], str | None]:
    """The reference values, their tolerances (where given) and their source, of every expect rule
    matching a resolved spec; a later rule's value wins, with its own tolerance or none. Adds the
    matching rules' indices to `used`."""
    expect: dict[str, float] = {}
    tolerance: dict[str, float] = {}
    source = None
    for i, rule in enumerate(expects):
        if matches(rule["match"], semantic):
            used.add(i)
            expect.update(rule["values"])
            for metric in rule["values"]:
                tolerance.pop(metric, None)
            tolerance.update(rule["tolerance"])
            source = rule["source"] or source
    return expect, tolerance, source


def phase_rules(value: Any, bad: Bad) -> list[dict]:
    """phases: [{match: {key: value}, transfer: name, <section>: {...}}]; each usable rule as
    {"match", "transfer", "sections"}."""
    if value is None:
        return []
    if not isinstance(value, list):
        bad(("phases",), "phases is a list of rules, e.g. [{match: {model.mixer: conv}, "
                         "transfer: conv_to_attention, train: {epochs: 300}}]")
        return []
    out = []
    for i, rule in enumerate(value):
        if not isinstance(rule, dict) or rule.get("transfer") not in TRANSFERS:
            got = rule.get("transfer") if isinstance(rule, dict) else rule
            bad(("phases", i) + (("transfer",) if isinstance(rule, dict) else ()),
                f"{shown(got)}: a phase rule is a mapping with `transfer` (one of {', '.join(TRANSFERS)}), "
                "optionally `match` and phase-2 sections")
            continue
        match = rule.get("match", {})
        # the match is checked as an expect rule's (with a dummy value), its problems at this rule's path
        checked = rules([{"match": match, "phase": 2}], "expect",
                        lambda p, m, i=i: bad(("phases", i) + p[2:], m))
        rest = {k: v for k, v in rule.items() if k not in ("match", "transfer")}
        sections = section_dicts(rest, ("phases", i), bad, "a phase rule")
        unknown = [(s, f) for s, fields in sections.items() for f in fields
                   if f not in SECTIONS[s].model_fields]
        for s, f in unknown:
            bad(("phases", i, s, f), unknown_option(s, f))
        if checked and not unknown:
            out.append({"match": match, "transfer": rule["transfer"], "sections": sections})
    return out

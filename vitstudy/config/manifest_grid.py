"""A manifest's `grid:` as axes: sub-grids, each a list of factors whose product is its cells.

    grid:                            # one sub-grid: a mapping of dotted keys to lists of values
      model.head: [cls, gap]         # a factor of two options, each setting one key
      zip: {model.embed_dim: [64, 128], model.num_heads: [2, 4]}   # a factor whose options set two keys
    grid: [{...}, {...}]             # a list of sub-grids: their cells are unioned

An option is the (dotted key, value, YAML path) triples one axis value sets together; a combination
(`combos`) is one option of every factor of a sub-grid. A key may vary in one place of a sub-grid only.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

from vitstudy.config.errors import Bad, dotted, shown
from vitstudy.config.spec import SECTIONS, rule_set, unknown_option

Option = tuple[tuple[str, Any, tuple], ...]  # the (key, value, yaml path) triples set together
Factor = list[Option]


def subgrids(grid: Any, bad: Bad) -> list[list[Factor]]:
    """The grid as a list of sub-grids; each sub-grid a list of factors (their product is its cells)."""
    if grid is None or grid == {}:
        return [[]]
    if isinstance(grid, list):
        if not grid:
            bad(("grid",), "an empty list of sub-grids has no cells; give at least one mapping")
            return []
        return [_factors(sub, ("grid", i), bad) for i, sub in enumerate(grid)]
    return [_factors(grid, ("grid",), bad)]


def combos(factors: list[Factor]) -> Iterator[Option]:
    """Every combination of one option per factor, as one tuple of (key, value, yaml path) triples."""
    for options in itertools.product(*factors):
        yield tuple(triple for option in options for triple in option)


def axes_of(subgrids: list[list[Factor]]) -> list[str]:
    """The dotted keys the grid varies, in the order they first appear."""
    return list(dict.fromkeys(k for sub in subgrids for factor in sub for opt in factor for k, _, _ in opt))


def _factors(grid: Any, path: tuple, bad: Bad) -> list[Factor]:
    if not isinstance(grid, dict):
        bad(path, "a grid is a mapping of dotted keys (e.g. model.head) to lists of values, "
                  "or a list of such mappings (sub-grids whose cells are unioned)")
        return []
    keys = _AxisKeys(bad)
    factors: list[Factor] = []
    for key, values in grid.items():
        if key == "zip":
            factors += _zip_factors(values, path, keys, bad)
        elif keys.check(key, path + (key,)) and _check_values(values, path + (key,), bad):
            factors.append([((key, v, path + (key, i)),) for i, v in enumerate(values)])
    return factors


def _zip_factors(values: Any, path: tuple, keys: _AxisKeys, bad: Bad) -> list[Factor]:
    """zip: {key: [...], ...} or a list of such groups; each group is one factor whose i-th option sets
    the i-th value of every key."""
    groups = values if isinstance(values, list) else [values]
    factors = []
    for gi, group in enumerate(groups):
        gpath = path + (("zip", gi) if isinstance(values, list) else ("zip",))
        if not isinstance(group, dict) or not group:
            bad(gpath, "zip is a mapping of dotted keys to lists of equal length "
                       "(or a list of such mappings)")
            continue
        ok = {k: v for k, v in group.items()
              if keys.check(k, gpath + (k,)) & _check_values(v, gpath + (k,), bad)}
        lengths = {k: len(v) for k, v in group.items() if isinstance(v, list)}
        if len(set(lengths.values())) > 1:
            bad(gpath, f"zipped lists differ in length ({lengths}); their i-th values go "
                       "together, so they must be equally long")
            continue
        if ok and len(ok) == len(group):
            n = len(next(iter(ok.values())))
            factors.append([tuple((k, v[i], gpath + (k, i)) for k, v in ok.items()) for i in range(n)])
    return factors


class _AxisKeys:
    """The keys one sub-grid varies: each a `section.field` of the spec, on one axis only."""

    def __init__(self, bad: Bad):
        self.bad, self.seen = bad, {}

    def check(self, key: Any, kpath: tuple) -> bool:
        section, _, fld = str(key).partition(".")
        if section not in SECTIONS or not fld:
            self.bad(kpath, f"grid keys are 'section.field' with section in {', '.join(SECTIONS)} (or `zip`)")
            return False
        if fld not in SECTIONS[section].model_fields:
            self.bad(kpath, unknown_option(section, fld))
            return False
        if rule_set(section, fld):
            self.bad(kpath, rule_set(section, fld))
            return False
        if key in self.seen:
            self.bad(kpath, f"{key} is already an axis at {dotted(self.seen[key])}; "
                            "a key varies in one place")
            return False
        self.seen[key] = kpath
        return True


def _check_values(values: Any, kpath: tuple, bad: Bad) -> bool:
    if not isinstance(values, list) or not values:
        bad(kpath, f"{shown(values)}: a grid axis is a non-empty list of values")
        return False
    return True

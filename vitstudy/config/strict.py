"""The value types every spec section is built from (vitstudy.config.model_spec, spec): a strict section
model (no value converted from another type, every float finite), bounded ints, tuples also given as
YAML's lists, and names checked against a registry.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from vitstudy.registry import Registry


class StrictModel(BaseModel):
    """A spec section: misspelt options are errors (`extra="forbid"`), values never change after
    validation (`frozen=True`, so a spec is hashable), are never converted from another type
    (`strict=True`; an int is taken where a float is expected) and are finite (`allow_inf_nan=False`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              protected_namespaces=())


def upto(limit: int, least: int = 1) -> Any:
    """An int from `least` (1: a positive int, as pydantic's PositiveInt says it) to `limit`."""
    return Annotated[int, Field(gt=0, le=limit) if least == 1 else Field(ge=least, le=limit)]


def as_tuple(value: Any) -> Any:
    """A list as a tuple (YAML and JSON have no tuples); anything else as it is, for validation to judge."""
    return tuple(value) if isinstance(value, list) else value


def listed(item: Any, most: int, least: int = 1) -> Any:
    """A tuple of `least` to `most` items, also given as a list."""
    return Annotated[tuple[item, ...], BeforeValidator(as_tuple), Field(min_length=least, max_length=most)]


def registry_name(registry: Registry) -> Any:
    """A str type that must be a name in `registry` (the error lists the valid names)."""

    def check(value: str) -> str:
        registry.entry(value)
        return value

    return Annotated[str, AfterValidator(check)]

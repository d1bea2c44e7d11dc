"""What every `vitstudy` command shares: exit statuses, errors as one line, and reading a manifest."""

from __future__ import annotations

import sys

from vitstudy.config.manifest import Grid, load

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def usage_error(message: str) -> int:
    """Print `vitstudy: error: <message>` and return the bad-input status."""
    print(f"vitstudy: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def refuse(problems: list[str]) -> int:
    """Print each problem as `usage_error` does and return the bad-input status."""
    for message in problems:
        usage_error(message)
    return EXIT_USAGE


def load_grid(args) -> Grid:
    """The manifest's grid, its budget (if any) solved with the models' cost (vitstudy.models.cost)."""
    return load(args.manifest, smoke=args.smoke, cost=_model_cost)


def _model_cost(spec):
    """vitstudy.models.cost.model_cost, imported (with torch) only when a budget needs it, so that a bad
    manifest is refused before torch loads."""
    from vitstudy.models.cost import model_cost

    return model_cost(spec)

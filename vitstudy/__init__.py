"""vitstudy: ablation grids for Vision Transformers.

From Python (vitstudy.api): `load_results` (one row per run as a pandas DataFrame), `load_table` (the
report's rows with their statistics), `run_grid` (`vitstudy run-grid` from a notebook or a script) and
`GridError` (what it refuses). They load on first use, so `import vitstudy` imports neither torch nor
pandas.
"""

__all__ = ["GridError", "load_results", "load_table", "run_grid"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from vitstudy import api

        return getattr(api, name)
    raise AttributeError(f"module 'vitstudy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

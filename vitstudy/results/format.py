"""Numbers as people read them in tables and plans: 5717416 -> 5.7M. No torch import."""

from __future__ import annotations


def human(n: float, unit: str = "") -> str:
    """5717416 -> '5.7M'; 1253683200 -> '1.25G' (three significant figures at most)."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"

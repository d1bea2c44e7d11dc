"""Numbers as people read them in tables and plans: 5717416 -> 5.7M, a mean ± its std, a signed Δ, a
p-value. No torch import."""

from __future__ import annotations

from typing import Any


def human(n: float, unit: str = "") -> str:
    """5717416 -> '5.7M'; 1253683200 -> '1.25G' (three significant figures at most)."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"


def mean_std(mean: float | None, std: float | None) -> str:
    """'98.52 ± 0.16'; '98.52' for one seed; '–' for none."""
    if mean is None:
        return "–"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def signed(x: float | None) -> str:
    """'+1.39', '-0.28'; a difference that rounds to zero is '+0.00', never '-0.00'."""
    if x is None:
        return "–"
    return f"{x if round(x, 2) != 0 else 0.0:+.2f}"


def p_text(p: float | None) -> str:
    """'0.034', '<0.001', '–' (no test)."""
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def value_text(v: Any) -> str:
    """A chosen hyperparameter: 0.003 -> '0.003', 1e-05 -> '1e-05'."""
    return f"{v:g}" if isinstance(v, float) else str(v)

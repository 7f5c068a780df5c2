"""A worked solution as a chain of arithmetic steps, and its text form.

Each step shows the arithmetic it does with the numbers of earlier steps, so a reader (or a process reward
model) can check every line on its own:

    Step 1: Monthly rate = 0.06 / 12 = 0.005
    Step 2: Number of payments = 12 × 30 = 360
    Step 3: Growth over the loan = (1 + 0.005)^360 = 6.022575
    ...
    Answer: 1199.1

Values are carried in full precision; the text shows them rounded (`show`). A step can be "tampered" (its
value replaced) and every later step is computed from the tampered value, which is how `corrupt_solution`
produces wrong trajectories whose first wrong step is known.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

Tamper = Callable[[float], float]


def show(x: float) -> str:
    """Round for display: about 7 significant digits (at least 2 decimals), never an exponent."""
    if isinstance(x, int) or float(x).is_integer():
        return str(int(x))
    if abs(x) >= 1:
        decimals = max(2, 7 - len(str(int(abs(x)))))
    else:
        # Small rates (a monthly 0.0029...) keep 6 significant digits: they are raised to large powers later.
        decimals = min(12, 5 - math.floor(math.log10(abs(x))))
    text = f"{x:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def show_answer(x: float) -> str:
    """The final answer as written on the `Answer:` line (the answer field holds the same number)."""
    return show(x)


@dataclass
class Step:
    what: str  # a short description, never containing " = "
    expr: str  # the arithmetic, written with the shown values of earlier steps
    value: float

    def line(self, number: int) -> str:
        return f"Step {number}: {self.what} = {self.expr} = {show(self.value)}"


@dataclass
class Worksheet:
    """Collects steps; `tamper=(step_number, fn)` replaces that step's value with fn(value)."""

    tamper: tuple[int, Tamper] | None = None
    steps: list[Step] = field(default_factory=list)

    def step(self, what: str, expr: str, value: float, *, whole: bool = False) -> float:
        number = len(self.steps) + 1
        if self.tamper is not None and self.tamper[0] == number:
            value = self.tamper[1](value)
            # A tampered whole-number step (units, days) stays a whole number, as a real slip would.
            value = float(round(value)) if whole else value
        self.steps.append(Step(what, expr, float(value)))
        return float(value)

    def text(self, answer: float) -> str:
        lines = [step.line(i + 1) for i, step in enumerate(self.steps)]
        return "\n".join(lines + [f"Answer: {show_answer(answer)}"])


def round_answer(x: float, decimals: int = 2) -> float:
    """Half-up rounding on the decimal value (Python's round() is half-even on binary floats)."""
    scaled = abs(x) * 10**decimals
    rounded = math.floor(scaled + 0.5 + 1e-9) / 10**decimals
    return math.copysign(rounded, x) if rounded else 0.0

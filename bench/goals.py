"""Goals a benchmark judges itself by, measured by repetition and judged on the median.

A figure from one run on a shared 2-core machine says more about that minute than about the
code, so every goal here is measured ``repeats`` times, the variants being compared
interleaved (A B A B ...) so that a noisy minute hits each of them, and judged on the median
of its samples; the spread (min..max) is reported beside it.

A benchmark adds its goals to its JSON report (``goals``: a list of ``Goal.as_dict()``);
``bench.run_all`` collects them into one table at the end.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_REPEATS = 3


@dataclass(frozen=True)
class Goal:
    """One floor or ceiling, e.g. "c16 events/s vs bare Flask >= 0.5"."""

    benchmark: str
    name: str
    samples: tuple[float, ...]
    bound: float
    higher_is_better: bool = True
    unit: str = ""
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def met(self) -> bool:
        if not self.samples:
            return False
        return self.median >= self.bound if self.higher_is_better else self.median <= self.bound

    @property
    def floor(self) -> str:
        return f"{'>=' if self.higher_is_better else '<='} {self.bound:g}{self.unit}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "name": self.name,
            "floor": self.floor,
            "bound": self.bound,
            "higher_is_better": self.higher_is_better,
            "unit": self.unit,
            "samples": list(self.samples),
            "median": round(self.median, 4),
            "spread": [round(min(self.samples), 4), round(max(self.samples), 4)] if self.samples else [],
            "met": self.met,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Goal:
        return cls(
            benchmark=data["benchmark"],
            name=data["name"],
            samples=tuple(float(x) for x in data["samples"]),
            bound=float(data["bound"]),
            higher_is_better=bool(data["higher_is_better"]),
            unit=data.get("unit", ""),
            note=data.get("note", ""),
        )


@dataclass
class Interleaved:
    """Results of running each variant ``repeats`` times, round-robin."""

    results: dict[str, list[Any]] = field(default_factory=dict)

    def values(self, variant: str, key: Callable[[Any], float] | None = None) -> list[float]:
        rows = self.results[variant]
        return [float(key(r) if key else r) for r in rows]

    def ratios(
        self, numerator: str, denominator: str, key: Callable[[Any], float] | None = None
    ) -> list[float]:
        """Per-round ratios (round i of one over round i of the other): a noisy round cancels."""
        top, bottom = self.values(numerator, key), self.values(denominator, key)
        return [a / b if b else float("nan") for a, b in zip(top, bottom, strict=True)]


def interleave(variants: dict[str, Callable[[], T]], repeats: int = DEFAULT_REPEATS) -> Interleaved:
    """Run every variant once per round, ``repeats`` rounds; the order alternates each round
    so that neither always goes first (warm caches, a slow first minute)."""
    out = Interleaved({name: [] for name in variants})
    names = list(variants)
    for round_no in range(repeats):
        order = names if round_no % 2 == 0 else list(reversed(names))
        for name in order:
            out.results[name].append(variants[name]())
    return out


def spread_text(values: Iterable[float], digits: int = 2) -> str:
    values = list(values)
    if not values:
        return "-"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def collect(paths: Iterable[Path]) -> list[Goal]:
    goals: list[Goal] = []
    for path in paths:
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        goals += [Goal.from_dict(g) for g in document.get("goals", [])]
    return goals


def table(goals: list[Goal]) -> str:
    """The plain-text table ``make bench`` ends with."""
    header = ("benchmark", "goal", "floor", "median", "spread", "n", "met")
    rows = [
        (
            g.benchmark,
            g.name,
            g.floor,
            f"{g.median:.3g}{g.unit}",
            f"{min(g.samples):.3g}..{max(g.samples):.3g}" if g.samples else "-",
            str(len(g.samples)),
            "yes" if g.met else "NO",
        )
        for g in goals
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    # A floor not met comes with what its benchmark measured of the limit: print it.
    lines += [f"NO: {g.benchmark}, {g.name}: {g.note}" for g in goals if not g.met and g.note]
    return "\n".join(lines)

"""The value a job returns to a sweeper (``objective``): a metric, optionally under a constraint.

``objective=gmia/auc`` returns the run's ``gmia/auc``. A leakage/utility trade-off, such as
"the lowest attack AUC among runs whose test accuracy is at least 0.6", is asked for with a
constraint and the value an infeasible run scores::

    objective="mia_public/auc if fed/test_accuracy >= 0.6 else 1"

A run that meets the constraint returns its ``mia_public/auc``; one that misses it returns 1,
which a minimising sweeper (Optuna, ``direction: minimize``) ranks below every feasible run
(an AUC is at most 1). Operators: ``>=``, ``>``, ``<=``, ``<``.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fedgen.core.errors import ConfigError

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_METRIC = r"[\w.-]+(?:/[\w.-]+)*"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_GRAMMAR = re.compile(
    rf"\s*(?P<metric>{_METRIC})\s*"
    rf"(?:if\s+(?P<constraint>{_METRIC})\s*(?P<op>>=|<=|>|<)\s*(?P<bound>{_NUMBER})"
    rf"\s+else\s+(?P<fallback>{_NUMBER})\s*)?"
)
_EXAMPLE = "e.g. gmia/auc, or 'mia_public/auc if fed/test_accuracy >= 0.6 else 1'"


@dataclass(frozen=True)
class Objective:
    """``metric``, or ``metric if constraint <op> bound else fallback``."""

    metric: str
    constraint: str | None = None
    op: str = ">="
    bound: float = 0.0
    fallback: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Objective:
        """Read an ``objective`` setting; :class:`ConfigError` naming the grammar if it fails."""
        match = _GRAMMAR.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigError(
                f"objective={text!r} is neither a metric name nor '<metric> if <metric> >= "
                f"<number> else <number>' ({_EXAMPLE})"
            )
        if match["constraint"] is None:
            return cls(match["metric"])
        bound, fallback = float(match["bound"]), float(match["fallback"])
        return cls(match["metric"], match["constraint"], match["op"], bound, fallback)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names the objective reads."""
        return (self.metric,) if self.constraint is None else (self.metric, self.constraint)

    def value(self, metrics: Mapping[str, float]) -> float:
        """The objective of a run whose final metrics are ``metrics``.

        A constraint that is not met (or whose metric is NaN) gives ``fallback``.
        """
        for name in self.metrics:
            if name not in metrics:
                close = difflib.get_close_matches(name, list(metrics), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(
                    f"objective={self.text!r}: {name!r} is not a metric this run logged{hint} "
                    f"({_EXAMPLE})"
                )
        if self.constraint is None:
            return metrics[self.metric]
        observed = metrics[self.constraint]
        met = not math.isnan(observed) and _COMPARE[self.op](observed, self.bound)
        return metrics[self.metric] if met else self.fallback

    @property
    def text(self) -> str:
        """The setting, written back canonically."""
        if self.constraint is None:
            return self.metric
        return f"{self.metric} if {self.constraint} {self.op} {self.bound:g} else {self.fallback:g}"

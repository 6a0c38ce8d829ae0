"""Evaluation pools, pure metrics (scores + truth -> numbers) and per-attack assessment."""

from fedgen.evaluation.pools import BalancedPool, Evaluation, PaperPool

__all__ = ["BalancedPool", "Evaluation", "PaperPool"]

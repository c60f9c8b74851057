"""Offline evaluation: top-K selection over scores and ranking / beyond-accuracy metrics."""

from __future__ import annotations

from tailorcast.evaluation.metrics import ALL_ACCURACY, beyond_accuracy, per_user, ranking_metrics
from tailorcast.evaluation.protocol import (
    Comparison,
    EvaluationResult,
    ModelResult,
    evaluate,
    paired_comparison,
)
from tailorcast.evaluation.ranking import blocked_top_k, top_k
from tailorcast.evaluation.report import write_report

__all__ = [
    "ALL_ACCURACY",
    "beyond_accuracy",
    "blocked_top_k",
    "per_user",
    "ranking_metrics",
    "top_k",
]
__all__ += [
    "Comparison",
    "EvaluationResult",
    "ModelResult",
    "evaluate",
    "paired_comparison",
    "write_report",
]

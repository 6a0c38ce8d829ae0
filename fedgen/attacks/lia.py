"""Label inference from single-sample gradients, by a meta-classifier and by the bias sign."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from fedgen.attacks.base import Arena, Observation, check_threshold
from fedgen.attacks.signals import per_sample_gradients
from fedgen.attacks.views import LabelView, label_view
from fedgen.core.errors import ConfigError
from fedgen.core.records import AttackResult


class GradientLIA:
    """Gradient label inference (the study's LIA; sign rule after Zhao et al. 2020, iDLG).

    Threat model: the server observes, for each target record, the gradient of its log loss
    on the final global model (what a client returns when it trains on a batch of one), but not
    its label. It also holds auxiliary records whose labels it knows, disjoint from the targets
    (a random ``aux_fraction`` of the evaluation pool), and computes their gradients itself.

    Inference: a meta-classifier (by default logistic regression) trained on the auxiliary
    records' flattened gradient vectors predicts each target's label; its probability of label
    1 is the score, and a target is called label 1 when the score is at least the threshold.
    Beside it, the exact rule: ``d loss / d b = sigmoid(z) - y`` is negative exactly when
    ``y = 1``, so the sign of the gradient's intercept component gives the label wherever it is
    non-zero (reported as the side rule ``sign_rule``).

    Parameters
    ----------
    name : str
        The attack's key in the ``attack`` config group, used in metric names.
    aux_fraction : float in (0, 1)
        Share of the pool whose labels the attacker knows.
    classifier : scikit-learn classifier, optional
        The meta-classifier template (cloned before fitting).
    threshold : float in [0, 1]
        Label 1 when the meta-classifier's probability is at least this.

    Works on any model of :mod:`fedgen.models`; the sign rule reads the gradient of the output
    bias, the last parameter of every model there.
    """

    kind = "label"
    observers = ("server",)

    def __init__(
        self,
        name: str = "lia",
        aux_fraction: float = 0.5,
        classifier: Any = None,
        threshold: float = 0.5,
    ) -> None:
        if not 0.0 < aux_fraction < 1.0:
            raise ConfigError(f"attack.{name}.aux_fraction={aux_fraction!r} must be in (0, 1)")
        self.name = name
        self.observer = "server"
        self.threshold = check_threshold(name, threshold)
        self.aux_fraction = aux_fraction
        self.classifier = classifier if classifier is not None else LogisticRegression()

    def observe(self, arena: Arena) -> Observation[LabelView]:
        """Targets' gradients and auxiliary labelled records; target labels stay with metrics."""
        return label_view(arena, self.aux_fraction, f"attack/{self.name}/aux")

    def run(self, view: LabelView) -> AttackResult:
        """Predict each target's label from its gradient."""
        final = view.server.final_params
        known = per_sample_gradients(view.model, final, view.aux_records, view.aux_labels)
        meta = clone(self.classifier).fit(known, view.aux_labels)
        column = list(meta.classes_).index(1)
        scores = np.asarray(meta.predict_proba(view.observed)[:, column], np.float64)
        bias = view.observed[:, -1]
        sign_rule = np.where(bias < 0, 1, np.where(bias > 0, 0, -1)).astype(np.int8)
        return AttackResult(self.name, scores, True, {"sign_rule": sign_rule})

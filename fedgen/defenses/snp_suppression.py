"""SNP suppression: each client leaves out its most label-correlated and its rare SNPs.

What it is, and what it is not
------------------------------
The reference study proposes, as a mitigation of membership and label inference, that a
hospital withhold the SNPs that carry the most information about its records: the SNPs most
correlated with the phenotype in its own training rows (they dominate the gradient a record
leaves in the model) and rare variants (a minor allele seen in few individuals singles them
out). Each client chooses from its own training rows only:

* the ``top_k_correlated`` SNPs with the largest ``|r_j|``, the Pearson correlation of SNP
  ``j``'s genotype (0/1/2) with the 0/1 label over the client's training rows (a constant
  column has ``r = 0``; ties go to the lower column index);
* every SNP whose minor-allele frequency in those rows, ``min(f, 1 - f)`` with
  ``f = mean(genotype) / 2``, is below ``min_maf``.

It makes **no differential-privacy claim** (:meth:`SNPSuppression.account` returns None): which
SNPs are withheld is itself computed from the client's data, and the other SNPs are released as
before. Its effect is measured by the attacks, not bounded.

How it trains
-------------
The wrapped model's ``fit`` zeroes the suppressed columns of ``X`` (a copy; the model keeps all
``p`` inputs, so every client's parameters keep the same shapes and FedAvg averages them as
usual) and trains the inner model as configured. It then puts the parameters that read the
suppressed inputs back to their incoming (global) values, so the client's update on them is
exactly zero:

* linear model: ``coef[j]``. With ``x_j = 0`` its data gradient is already 0; only
  scikit-learn's L2 shrinkage (``alpha``) would move it, and that is undone.
* MLP: the rows ``W1[j, :]``. They too get zero data gradient (``dL/dW1[j, :] = x_j delta``),
  but the L2 penalty and Adam's carried moments would still move them; they are reset. The
  rest of the network (``b1``, ``W2``, ``b2`` and the other rows of ``W1``) trains on inputs
  where the suppressed SNPs read 0, i.e. as if every individual had the reference genotype
  there, while the global ``W1[j, :]`` (learnt by other clients) would feed those SNPs into the
  hidden units at prediction time. The hidden biases therefore absorb the suppressed SNPs'
  average contribution under the current ``W1`` differently than on full data: suppression is
  not the same as training a smaller network, as it is for the linear model.

FedAvg still averages the unchanged coefficients with the weight of the suppressing client, so
a SNP suppressed by one client is pulled towards its previous global value in proportion to that
client's rows.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from fedgen.core.errors import ConfigError
from fedgen.defenses.base import BaseDefense, PrivacyAccount, TrainingShape
from fedgen.models import Model, ModelWrapper
from fedgen.models.base import Params

# The parameter each model family reads input column j through, by row: coef[j] or W1[j, :].
INPUT_WEIGHTS = ("coef", "W1")


def label_correlations(X: NDArray[np.float64], y: NDArray[np.integer]) -> NDArray[np.float64]:
    """Pearson ``r`` of every column of ``X`` (n, p) with ``y`` (n,); 0 where either is constant."""
    xc = X - X.mean(axis=0)
    yc = np.asarray(y, dtype=np.float64) - float(np.mean(y))
    denom = np.sqrt((xc * xc).sum(axis=0) * float(yc @ yc))
    num = yc @ xc
    out = np.zeros(X.shape[1])
    np.divide(num, denom, out=out, where=denom > 0)
    return out


def minor_allele_frequencies(X: NDArray[np.float64]) -> NDArray[np.float64]:
    """``min(f, 1 - f)`` per column, ``f = mean(genotype) / 2`` (genotypes coded 0/1/2)."""
    f = X.mean(axis=0) / 2.0
    return np.asarray(np.minimum(f, 1.0 - f), dtype=np.float64)


class SNPSuppression(BaseDefense):
    """Each client withholds its ``top_k_correlated`` and its rare (MAF < ``min_maf``) SNPs.

    Protects (heuristically, no DP claim) the records of each client against observers of what
    it sends -- the server and, through the global model, everyone -- by leaving the most
    revealing SNPs' coefficients untouched by the client's data (module docstring).

    Parameters
    ----------
    name : str
        The defense's key in the ``defense`` config group.
    top_k_correlated : int >= 0
        How many of the most label-correlated SNPs (by ``|r|`` in the client's rows) to drop.
    min_maf : float in [0, 0.5]
        Drop SNPs whose minor-allele frequency in the client's rows is below this (0: none).

    Raises
    ------
    ConfigError
        On any invalid value, naming ``defense.<name>.<key>`` and the fix.
    """

    def __init__(
        self, name: str = "snp_suppression", top_k_correlated: int = 0, min_maf: float = 0.0
    ) -> None:
        super().__init__(name)
        if (
            isinstance(top_k_correlated, bool)
            or not isinstance(top_k_correlated, int)
            or top_k_correlated < 0
        ):
            raise ConfigError(
                f"defense.{name}.top_k_correlated={top_k_correlated!r} must be an integer >= 0 "
                "(0: none), e.g. 10"
            )
        if isinstance(min_maf, bool) or not isinstance(min_maf, int | float):
            raise ConfigError(
                f"defense.{name}.min_maf={min_maf!r} must be a number in [0, 0.5], e.g. 0.01"
            )
        if not (math.isfinite(min_maf) and 0.0 <= min_maf <= 0.5):
            raise ConfigError(
                f"defense.{name}.min_maf={min_maf!r} must be in [0, 0.5] (0: none), e.g. 0.01"
            )
        self.top_k_correlated = int(top_k_correlated)
        self.min_maf = float(min_maf)

    def suppressed(self, X: NDArray[np.float64], y: NDArray[np.integer]) -> NDArray[np.int64]:
        """Sorted column indices this defense suppresses on rows ``X`` (n, p), labels ``y``."""
        p = X.shape[1]
        chosen = np.zeros(p, dtype=bool)
        if self.top_k_correlated:
            r = np.abs(label_correlations(X, y))
            order = np.argsort(-r, kind="stable")  # largest |r| first, ties by column index
            chosen[order[: min(self.top_k_correlated, p)]] = True
        if self.min_maf > 0:
            chosen |= minor_allele_frequencies(X) < self.min_maf
        return np.flatnonzero(chosen).astype(np.int64)

    def wrap_model(self, model: Model, seed: int) -> Model:
        """``model`` whose ``fit`` leaves out each client's suppressed SNPs."""
        _input_weights(model.init_params(2, seed), 2, self.name)  # fails early if unsupported
        return SuppressedModel(model, self)

    def account(self, shape: TrainingShape) -> PrivacyAccount | None:
        """None: suppression makes no DP claim."""
        return None


class SuppressedModel(ModelWrapper):
    """A :class:`~fedgen.models.Model` whose ``fit`` zeroes the client's suppressed SNPs.

    Everything but ``fit`` is the inner model's (evaluation and attacks see all SNPs).
    """

    def __init__(self, inner: Model, defense: SNPSuppression) -> None:
        super().__init__(inner, defense.name)
        self.defense = defense

    def fit(
        self,
        params: Params,
        X: NDArray[np.float64],
        y: NDArray[np.int8],
        *,
        epochs: int,
        seed: int,
        state: Params | None,
    ) -> tuple[Params, Params]:
        """The inner ``fit`` on ``X`` with the suppressed columns zeroed, their weights kept."""
        columns = self.defense.suppressed(X, y)
        if columns.size == 0:
            return self.inner.fit(params, X, y, epochs=epochs, seed=seed, state=state)
        key = _input_weights(params, X.shape[1], self.defense.name)
        masked = X.copy()
        masked[:, columns] = 0.0
        new, kept = self.inner.fit(params, masked, y, epochs=epochs, seed=seed, state=state)
        weights = np.array(new[key], dtype=np.float64)
        weights[columns] = np.asarray(params[key], dtype=np.float64)[columns]
        return {**new, key: weights}, kept


def _input_weights(params: Params, n_features: int, name: str) -> str:
    """The parameter whose row ``j`` reads input ``j``: ``coef`` (linear) or ``W1`` (MLP)."""
    for key in INPUT_WEIGHTS:
        if key in params and np.shape(params[key])[:1] == (n_features,):
            return key
    raise ConfigError(
        f"defense.{name} needs a model whose input weights are `coef` (p,) or `W1` (p, h); "
        f"this one has {sorted(params)}: use model=sgd_logistic or model=mlp"
    )

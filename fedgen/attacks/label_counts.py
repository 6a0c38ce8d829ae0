"""Each client's number of cases, read from its intercept update (the bias-gradient attack)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit
from sklearn.linear_model import SGDClassifier

from fedgen.attacks.base import Arena, Observation, check_threshold
from fedgen.attacks.observers import TrainingView, check_observer, observe_training
from fedgen.core.errors import ConfigError
from fedgen.core.records import AttackResult, Estimate
from fedgen.core.seeding import child_rng
from fedgen.models import GDLogistic, Model, Params, SGDLogistic

# Shadow clients' case shares, as offsets from the reference prevalence, and repeats of each.
SHADOW_SHARES = (-0.1, 0.0, 0.1)
SHADOW_REPEATS = 8
# A round whose shadow line has slope above 1 - MIN_SENSITIVITY is ignored (it adapts to any
# case share); variances are floored at MIN_VARIANCE (an exact gradient step has none).
MIN_SENSITIVITY = 1e-3
MIN_VARIANCE = 1e-30


@dataclass(frozen=True)
class CountView:
    """What the server holds: the training it saw, the recipe, and maybe a reference panel.

    Attributes
    ----------
    training : TrainingView
        The server's view (every round's client models and sample counts).
    model : Model
        The model and its training settings (which the server configured).
    local_epochs : int
        Local epochs per round (``federation.local_epochs``, also the server's setting).
    reference_records : ndarray of float64, shape (m, p), or None
        Public reference genotypes of the same population (shadow clients' rows); None if the
        cohort has none.
    reference_labels : ndarray of int8, shape (m,), or None
        Their phenotypes.
    seed : int
        The attacker's own randomness (which reference rows make each shadow client).
    """

    training: TrainingView
    model: Model
    local_epochs: int
    reference_records: NDArray[np.float64] | None
    reference_labels: NDArray[np.int8] | None
    seed: int


class LabelCountAttack:
    """Each client's number of cases from its intercept updates (Wainakh et al. 2022, for FL).

    Threat model: the honest-but-curious FedAvg server (``observer: server``). It knows the
    training recipe, which it configured (the model class and its settings, the local epochs),
    every client's reported sample count ``n`` and every model: the round's start model and the
    model each client returned. Where the cohort has one, it also holds a public reference
    panel of the same population with phenotypes (``cohort.reference``), never the clients'
    rows.

    Inference: the log loss's intercept gradient of a row is ``sigmoid(z) - y``, so a round of
    steps ``t`` with sizes ``eta_t`` (one per row for per-sample SGD, one per full batch for
    gradient descent) moves the intercept by ``db = -sum_t eta_t (s_t - y_t)``, ``s_t`` the
    prediction (the batch's mean prediction) at step ``t``. Hence the client's case share is
    ``y = db / H + s``, with ``H = sum_t eta_t`` and ``s`` the ``eta``-weighted mean of ``s_t``.
    With full-batch gradient descent (:class:`~fedgen.models.GDLogistic`, one step per round)
    from the zero model, ``s = sigmoid(0) = 1/2`` exactly: round 1 gives ``n_case = n (1/2 + db
    / eta)`` **exactly** (FedSGD). Otherwise ``s`` depends on the client's rows, which the
    server does not see: the model learns within the round, so ``s_t`` drifts towards the
    client's own prevalence. The server measures that drift on **shadow clients**: ``n``
    reference rows at a few case shares around the reference prevalence, trained for one round
    from the round's start model with the client's recipe and step counter (clients of one size
    share them), give the line ``s = a + b y`` and its residual variance ``v``; the client's
    round then gives ``y = (db / H + a) / (1 - b)`` with variance ``v / (1 - b)^2``. (For one
    gradient step ``b = 0``, ``v = 0``: still exact in every round.) For per-sample SGD
    (:class:`~fedgen.models.SGDLogistic`) the step sizes follow scikit-learn's schedule
    (``_sgd_fast``: ``constant``/``adaptive`` ``eta0`` within a ``partial_fit`` call,
    ``invscaling`` ``eta0 / t^power_t``, ``optimal`` ``1 / (alpha (t0 + t - 1))`` with ``t0 =
    1 / (alpha sqrt(1 / sqrt(alpha)))``; intercept decay 1 on dense data, no penalty on the
    intercept), with ``t`` the client's step counter, which the server counts from the
    reported sample counts (it starts at 1). The estimate is approximate there: a random row
    order makes ``sum_t eta_t y_t = H y`` only in expectation, and the drift depends on the
    client's particular rows, not only on their case share. Where the steps are large against
    ``n`` (scikit-learn's ``optimal`` schedule on unscaled genotypes, or thousands of rows at
    ``eta0 = 0.001``) the model adapts to any prevalence within a round, ``b`` nears 1, the
    intercept step is mostly row-order noise, and the estimate stays near the prior (the
    trivial guess).

    Estimates: ``cases_round_1`` from round 1, ``cases`` from all rounds (their
    precision-weighted mean, counted as one observation because a client shuffles alike every
    round), each combined with the prior ``N(q, q (1 - q) / n)``, ``q`` the reference
    prevalence, shares clipped to [0, 1] and times ``n``. Without a reference panel: ``s`` is
    the start model's prediction at its intercept alone (crude), no prior, rounds averaged.
    The metrics compare them with each client's true number of cases among its training rows,
    and with the trivial guess ``n q`` (``q`` of the whole cohort without a reference panel).

    Assumptions: a linear logistic model trained by :class:`~fedgen.models.GDLogistic` or
    :class:`~fedgen.models.SGDLogistic` (any other model is a ConfigError: its optimiser, e.g.
    Adam or momentum, does not keep the bias step linear in the labels); every client trains in
    every round. Defenses that change training (clipping, noise) make the estimate approximate.

    Parameters
    ----------
    name : str
        The attack's key in the ``attack`` config group, used in metric names.
    local_epochs : int
        Local epochs per round (``${federation.local_epochs}``).
    threshold : float in [0, 1]
        Unused (the attack makes no per-target calls); kept for the common interface.
    observer : str
        Must be ``server``.
    """

    kind: ClassVar[str] = "count"
    observers: ClassVar[tuple[str, ...]] = ("server",)

    def __init__(
        self,
        name: str = "label_counts",
        local_epochs: int = 1,
        threshold: float = 0.5,
        observer: str = "server",
    ) -> None:
        if isinstance(local_epochs, bool) or not isinstance(local_epochs, int) or local_epochs < 1:
            raise ConfigError(
                f"attack.{name}.local_epochs={local_epochs!r} must be a positive integer; set it "
                "to ${federation.local_epochs}"
            )
        self.name = name
        self.local_epochs = local_epochs
        self.threshold = check_threshold(name, threshold)
        self.observer = check_observer(name, observer, self.observers)

    def check_model(self, model: Model) -> None:
        """Fail before training unless ``model``'s intercept step can be inverted."""
        _check_model(self.name, model)

    def observe(self, arena: Arena) -> Observation[CountView]:
        """The server's view; each client's true case count among its training rows."""
        self.check_model(arena.model)
        training = observe_training(arena.server, self.observer)
        cohort = arena.cohort
        counts = np.asarray(training.client_counts[0], np.float64)
        if arena.split is not None:
            trains = [c.train for c in arena.split.clients]
        else:  # no split: the pool's members are every training row only under evaluation=paper
            pool = arena.pool
            trains = [pool.rows[pool.is_member & (pool.client == c)] for c in range(counts.size)]
            if [t.size for t in trains] != counts.astype(int).tolist():
                raise ConfigError(
                    f"attack {self.name} needs every client's training rows for its truth; "
                    "without the split they are the pool's members only under evaluation=paper"
                )
        cases = np.array([cohort.labels[t].sum() for t in trains], np.float64)
        reference = cohort.reference
        known = reference.labels if reference is not None else cohort.labels
        trivial = counts * float(np.mean(known))
        view = CountView(
            training=training,
            model=arena.model,
            local_epochs=self.local_epochs,
            reference_records=(
                reference.genotypes.astype(np.float64) if reference is not None else None
            ),
            reference_labels=reference.labels if reference is not None else None,
            seed=arena.seed,
        )
        empty = np.empty(0, np.int64)
        return Observation(
            view=view,
            truth=np.empty(0, bool),
            clients=empty,
            facts={"cases": cases, "cases_round_1": cases},
            baselines={"cases": trivial, "cases_round_1": trivial},
        )

    def run(self, view: CountView) -> AttackResult:
        """Estimate every client's case count from round 1 and from all rounds."""
        n = np.asarray(view.training.client_counts[0], np.float64)
        shares, variances = round_estimates(view, self.name)
        if view.reference_labels is None:  # no prior and no noise model: mean of the rounds
            first, pooled = shares[:, 0], shares.mean(axis=1)
        else:
            prevalence = float(np.mean(view.reference_labels))
            prior = (prevalence, prevalence * (1.0 - prevalence) / n)
            first = posterior_mean(shares[:, :1], variances[:, :1], *prior)
            pooled = posterior_mean(shares, variances, *prior)
        return AttackResult(
            self.name,
            scores=np.empty(0),
            higher_is_positive=True,
            estimates={
                "cases": Estimate(n * np.clip(pooled, 0.0, 1.0)),
                "cases_round_1": Estimate(n * np.clip(first, 0.0, 1.0)),
            },
        )


def _check_model(name: str, model: Model) -> None:
    if isinstance(model, GDLogistic):
        return
    if not isinstance(model, SGDLogistic):
        raise ConfigError(
            f"attack {name} inverts the intercept step of model=gd_logistic or a model=sgd_logistic"
            f" option; model {model.name!r} trains otherwise: choose one of those models"
        )
    sgd = SGDClassifier(**model.sgd).get_params()
    if not sgd["fit_intercept"] or sgd["class_weight"] is not None:
        raise ConfigError(
            f"attack {name} needs model.fit_intercept=true and model.class_weight=null"
        )
    if sgd["learning_rate"] not in ("constant", "adaptive", "invscaling", "optimal"):
        raise ConfigError(
            f"attack {name} cannot invert model.learning_rate={sgd['learning_rate']!r}; use "
            "constant, adaptive, invscaling or optimal"
        )


def posterior_mean(
    shares: NDArray[np.float64],
    variances: NDArray[np.float64],
    prior_mean: float,
    prior_variance: NDArray[np.float64],
) -> NDArray[np.float64]:
    """The rounds' estimates (K, R) combined, then with the prior (K,): float64 (K,).

    The rounds are averaged with weights ``1 / variance`` but counted as one observation of
    their mean variance (harmonic), since a client shuffles its rows alike in every round and
    the rounds' errors are far from independent; that observation and the prior are then
    weighted by their precisions.
    """
    precision = 1.0 / variances
    weight = np.sum(precision, axis=1)
    safe = np.where(weight > 0, weight, 1.0)
    combined = np.where(weight > 0, np.sum(precision * shares, axis=1) / safe, prior_mean)
    observed = weight / shares.shape[1]
    return np.asarray(
        (observed * combined + prior_mean / prior_variance) / (observed + 1.0 / prior_variance),
        np.float64,
    )


def round_estimates(view: CountView, name: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each client's case share estimated from each round, and the estimate's variance.

    From ``db = H (y - s)`` and the shadow clients' line ``s = a + b y`` (residual variance
    ``v``): ``y = (db / H + a) / (1 - b)`` with variance ``v / (1 - b)^2``. Without a reference
    panel, ``a`` is the start model's prediction at its intercept, ``b = 0`` and the variance
    is unknown (NaN).

    Returns
    -------
    shares, variances : ndarray of float64, shape (K, R) each
    """
    training = view.training
    K, R = training.num_clients, training.num_rounds
    shares, variances = np.empty((K, R)), np.full((K, R), np.nan)
    steps = [_client_step_sizes(view, c) for c in range(K)]
    for r in range(1, R + 1):
        start = training.round_start(r)
        lines: dict[tuple[int, int], tuple[float, float, float]] = {}
        for c in range(K):
            returned = training.client_params[r - 1][c]
            slope = float(returned["intercept"][0] - start["intercept"][0]) / np.sum(
                steps[c][r - 1]
            )
            if view.reference_records is None:
                shares[c, r - 1] = float(expit(start["intercept"][0])) + slope
                continue
            # Clients of the same size (and so the same step counter) share their shadows.
            n = int(training.client_counts[r - 1][c])
            done = int(sum(int(counts[c]) for counts in training.client_counts[: r - 1]))
            if (n, done) not in lines:
                rng = child_rng(view.seed, f"attack/{name}/shadow/{r}/{n}/{done}")
                lines[n, done] = shadow_line(view, start, n, done, rng)
            a, b, v = lines[n, done]
            if 1.0 - b > MIN_SENSITIVITY:
                shares[c, r - 1] = (slope + a) / (1.0 - b)
                variances[c, r - 1] = max(v, MIN_VARIANCE) / (1.0 - b) ** 2
            else:  # the round adapts to any case share: its intercept step says nothing
                shares[c, r - 1], variances[c, r - 1] = 0.5, np.inf
    return shares, variances


def shadow_line(
    view: CountView, start: Params, n: int, done: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """The line ``s = a + b y``: a round's mean prediction given the client's case share.

    Shadow clients of ``n`` reference rows, at case shares ``SHADOW_SHARES`` around the
    reference prevalence (``SHADOW_REPEATS`` each), train one round from ``start`` as the
    client did (the same recipe and step counter: ``done`` rows already seen per epoch); each
    gives ``s = y - db / H``, and a least-squares line through them gives ``(a, b)`` and the
    residual variance ``v``.
    """
    assert view.reference_records is not None and view.reference_labels is not None
    labels = view.reference_labels
    cases, controls = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    prevalence = float(np.mean(labels))
    shares, means = [], []
    state, etas = _shadow_state(view, done, n)
    for offset in SHADOW_SHARES:
        k = round(float(np.clip(prevalence + offset, 0.0, 1.0)) * n)
        for _ in range(SHADOW_REPEATS):
            rows = np.concatenate(
                [
                    rng.choice(cases, k, replace=k > cases.size),
                    rng.choice(controls, n - k, replace=n - k > controls.size),
                ]
            )
            rows = rng.permutation(rows)
            returned, _ = view.model.fit(
                start,
                view.reference_records[rows],
                labels[rows],
                epochs=view.local_epochs,
                seed=int(rng.integers(2**31 - 1)),
                state=state,
            )
            db = float(returned["intercept"][0] - start["intercept"][0])
            shares.append(k / n)
            means.append(k / n - db / float(np.sum(etas)))
    x, y = np.array(shares), np.array(means)
    b, a = np.polyfit(x, y, 1)
    residual = y - (a + b * x)
    return float(a), float(b), float(residual @ residual / (x.size - 2))


def _shadow_state(view: CountView, done: int, n: int) -> tuple[Params | None, NDArray[np.float64]]:
    """The optimiser state a client has after ``done`` rows per epoch, and its next step sizes."""
    model, epochs = view.model, view.local_epochs
    if isinstance(model, GDLogistic):
        return None, np.full(epochs * model.steps, model.learning_rate)
    assert isinstance(model, SGDLogistic)
    t = 1.0 + epochs * done
    sgd = SGDClassifier(**model.sgd).get_params()
    return {"t": np.array([t])}, sgd_step_sizes(sgd, t, epochs * n)


def _client_step_sizes(view: CountView, c: int) -> list[NDArray[np.float64]]:
    """Client ``c``'s step sizes in every round, from the recipe and its sample counts."""
    training, epochs = view.training, view.local_epochs
    counts = [int(r[c]) for r in training.client_counts]
    model = view.model
    if isinstance(model, GDLogistic):
        return [np.full(epochs * model.steps, model.learning_rate) for _ in counts]
    assert isinstance(model, SGDLogistic)
    sgd = SGDClassifier(**model.sgd).get_params()
    out, t = [], 1.0  # scikit-learn's step counter t_ starts at 1 and grows by one per row
    for n in counts:
        out.append(sgd_step_sizes(sgd, t, epochs * n))
        t += epochs * n
    return out


def sgd_step_sizes(sgd: dict[str, object], t_start: float, steps: int) -> NDArray[np.float64]:
    """scikit-learn's SGD step sizes ``eta_t`` for ``t = t_start, ..., t_start + steps - 1``.

    Parameters
    ----------
    sgd : dict
        ``SGDClassifier.get_params()`` of the model (``learning_rate``, ``eta0``, ``alpha``,
        ``power_t``).
    t_start : float
        The client's step counter ``t_`` at the round's start (1 before its first row).
    steps : int
        Rows processed in the round (local epochs times its rows).

    Returns
    -------
    ndarray of float64, shape (steps,)
    """
    t = t_start + np.arange(steps, dtype=np.float64)
    rule = sgd["learning_rate"]
    eta0 = float(sgd["eta0"])  # type: ignore[arg-type]
    if rule == "optimal":
        alpha = float(sgd["alpha"])  # type: ignore[arg-type]
        # _sgd_fast: typw = sqrt(1 / sqrt(alpha)); the log loss's gradient at (1, -typw) is
        # below 1, so the first step is eta = typw and t0 = 1 / (typw alpha).
        typw = np.sqrt(1.0 / np.sqrt(alpha))
        t0 = 1.0 / (typw * alpha)
        return np.asarray(1.0 / (alpha * (t0 + t - 1.0)), np.float64)
    if rule == "invscaling":
        return np.asarray(eta0 / t ** float(sgd["power_t"]), np.float64)  # type: ignore[arg-type]
    return np.full(steps, eta0)  # constant; adaptive only shrinks eta between epochs of a call

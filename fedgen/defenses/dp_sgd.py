"""Record-level DP inside each client's local training: DP-SGD (Abadi et al. 2016).

What it protects, and from whom
-------------------------------
Each individual's genotype record (unit ``record``) against **everyone who sees what a client
sends**, including the honest-but-curious server: the noise is added on the client, inside
training, before the update leaves it. Every model the server records (client and global) is a
post-processing of the noised steps, so the membership attacks on either are bounded by the
account.

The algorithm (Abadi et al. 2016, "Deep learning with differential privacy", arXiv:1607.00133,
Algorithm 1 with Poisson sampling as in its moments accountant): on a client with ``n`` rows,
each step

1. samples a batch ``B``, each row independently with probability ``q`` (Poisson sampling),
2. takes each sampled row's log-loss gradient ``g_i`` (the inner model's
   ``per_sample_gradients``) and clips it to L2 norm ``C``: ``g_i min(1, C / ||g_i||)``,
3. sums them and adds ``N(0, (sigma C)^2 I)``,
4. divides by the *expected* batch size ``q n`` (not ``|B|``: a fixed denominator keeps one
   record's influence at ``C / (q n)``, as the add/remove accounting assumes),
5. steps ``theta <- theta - lr (noisy mean + weight_decay theta)``.

``weight_decay`` is an optional L2 term on all parameters (default 0: none). It does not touch
the data, so it costs no privacy. The inner model's own optimiser and settings (scikit-learn's
learning-rate schedule, ``alpha``, Adam) are not used: the wrapper trains the inner model's
parameters with the plain update above and only borrows its gradients.

Oracle: with ``sigma = 0`` and ``clip_norm = inf`` a step is exactly plain minibatch SGD on the
mean log-loss gradient of a Poisson batch, scaled by ``|B| / (q n)`` (its sum over ``q n``);
with ``q = 1`` that is full-batch gradient descent on the mean gradient.

Randomness: client ``k``'s round ``r`` draws from ``defense/<name>/round/<r>`` of the client's
own seed (the ``seed`` its ``fit`` receives, itself the stream ``client/<k>`` of the experiment's
seed); each step draws its batch mask (``n`` uniforms) and then its noise (``d`` normals, drawn
even when ``sigma = 0``, so that batches do not depend on ``sigma``). The round is counted in
the client's kept state. Nothing reads the global ``np.random``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from fedgen.core.errors import ConfigError
from fedgen.core.seeding import child_rng
from fedgen.defenses.accounting import ACCOUNTANT, gaussian_epsilon
from fedgen.defenses.base import BaseDefense, PrivacyAccount, TrainingShape, check_delta, number
from fedgen.models import Model, ModelWrapper
from fedgen.models.base import Params, flatten

ROUND_KEY = "dp_sgd_round"


def unflatten(vector: NDArray[np.float64], template: Params) -> Params:
    """Named arrays shaped as ``template`` from a vector in :func:`flatten`'s order."""
    out: Params = {}
    start = 0
    for key, array in template.items():
        size = int(np.size(array))
        out[key] = vector[start : start + size].reshape(np.shape(array)).copy()
        start += size
    if start != vector.shape[0]:
        raise ValueError(f"vector of {vector.shape[0]} values for {start} parameters")
    return out


def clip_rows(grads: NDArray[np.float64], clip_norm: float) -> NDArray[np.float64]:
    """Each row scaled to L2 norm at most ``clip_norm`` (rows of norm 0 or below left alone)."""
    norms = np.linalg.norm(grads, axis=1)
    scale = np.ones_like(norms)
    over = norms > clip_norm
    scale[over] = clip_norm / norms[over]
    return np.asarray(grads * scale[:, None], dtype=np.float64)


class DPSGD(BaseDefense):
    """DP-SGD in every client's local training: record-level DP against the server and all.

    Parameters
    ----------
    name : str
        The defense's key in the ``defense`` config group.
    clip_norm : float > 0 (inf allowed)
        ``C``, the per-sample gradient bound. ``.inf`` (with ``noise_multiplier=0``) is plain
        SGD; with noise it makes the noise infinite, so it is refused then.
    noise_multiplier : float >= 0
        ``sigma``: the noise std on the gradient sum is ``sigma C``; 0 claims no privacy.
    batch_size : int >= 1, optional
        Expected batch size: a client with ``n`` rows samples each with ``q = min(1,
        batch_size / n)`` and takes ``round(n / batch_size)`` (at least 1) steps per epoch.
    sampling_rate : float in (0, 1], optional
        ``q`` directly (the same on every client), with ``round(1 / q)`` steps per epoch. Give
        exactly one of ``batch_size`` and ``sampling_rate``.
    learning_rate : float > 0
    weight_decay : float >= 0
        L2 term added to the noisy gradient (data-independent, so free in privacy).
    delta : float in (0, 1)

    Raises
    ------
    ConfigError
        On any invalid value, naming ``defense.<name>.<key>`` and the fix.
    """

    def __init__(
        self,
        name: str = "dp_sgd",
        clip_norm: float = 1.0,
        noise_multiplier: float = 1.0,
        batch_size: int | None = None,
        sampling_rate: float | None = None,
        learning_rate: float = 0.05,
        weight_decay: float = 0.0,
        delta: float = 1e-5,
    ) -> None:
        super().__init__(name)
        c = number(name, "clip_norm", clip_norm, "e.g. 1.0 (.inf: no clipping)")
        if not c > 0:
            raise ConfigError(f"defense.{name}.clip_norm={clip_norm!r} must be > 0, e.g. 1.0")
        z = number(name, "noise_multiplier", noise_multiplier, "e.g. 1.0")
        if not (math.isfinite(z) and z >= 0):
            raise ConfigError(
                f"defense.{name}.noise_multiplier={noise_multiplier!r} must be finite and >= 0 "
                "(e.g. 1.0; 0 adds no noise)"
            )
        if z > 0 and math.isinf(c):
            raise ConfigError(
                f"defense.{name}.clip_norm=inf with noise_multiplier={z:g} adds infinite noise; "
                "set a finite clip_norm (e.g. 1.0) or noise_multiplier=0"
            )
        if (batch_size is None) == (sampling_rate is None):
            raise ConfigError(
                f"defense.{name}: set exactly one of batch_size and sampling_rate "
                f"(got batch_size={batch_size!r}, sampling_rate={sampling_rate!r}), "
                "e.g. batch_size=64"
            )
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ConfigError(
                f"defense.{name}.batch_size={batch_size!r} must be a positive integer, e.g. 64"
            )
        if sampling_rate is not None:
            q = number(name, "sampling_rate", sampling_rate, "e.g. 0.01")
            if not 0 < q <= 1:
                raise ConfigError(
                    f"defense.{name}.sampling_rate={sampling_rate!r} must be in (0, 1], e.g. 0.01"
                )
        lr = number(name, "learning_rate", learning_rate, "e.g. 0.01")
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(
                f"defense.{name}.learning_rate={learning_rate!r} must be finite and > 0, e.g. 0.01"
            )
        wd = number(name, "weight_decay", weight_decay, "e.g. 0.0")
        if not (math.isfinite(wd) and wd >= 0):
            raise ConfigError(
                f"defense.{name}.weight_decay={weight_decay!r} must be finite and >= 0 (0: none)"
            )
        d = check_delta(name, delta)
        self.clip_norm = c
        self.noise_multiplier = z
        self.batch_size = batch_size
        self.sampling_rate = None if sampling_rate is None else float(sampling_rate)
        self.learning_rate = lr
        self.weight_decay = wd
        self.delta = d

    def rate(self, n: int) -> float:
        """``q`` on a client with ``n`` rows."""
        if self.sampling_rate is not None:
            return self.sampling_rate
        assert self.batch_size is not None
        return min(1.0, self.batch_size / n)

    def steps_per_epoch(self, n: int) -> int:
        """``round(n / batch_size)`` (or ``round(1 / q)``), at least 1."""
        return max(1, round(1.0 / self.rate(n)))

    def wrap_model(self, model: Model, seed: int) -> Model:
        """``model`` trained by DP-SGD on its per-sample gradients.

        DP-SGD replaces the model's ``fit`` and uses only its gradients, so a defense listed
        before it that changes ``fit`` (a model wrapper, e.g. ``snp_suppression``) would be
        silently bypassed: that order is refused.
        """
        if hasattr(model, "inner"):  # fedgen's model wrappers keep the model they wrap here
            raise ConfigError(
                f"defense.{self.name} replaces the model's training, so the defense before it "
                f"that changes training ({model.name}) would be bypassed; list {self.name} "
                f"first, e.g. defense=[{self.name},snp_suppression]"
            )
        return DPSGDModel(model, self)

    def account(self, shape: TrainingShape) -> PrivacyAccount | None:
        """Record-level (epsilon, delta): Poisson-subsampled Gaussian over every local step.

        A record lives on one client, so its privacy is that of its client's steps:
        ``local_epochs * steps_per_epoch(n_k) * num_rounds`` compositions of the Gaussian
        mechanism (multiplier ``sigma``) Poisson-subsampled at ``q_k``, by dp-accounting's RDP
        accountant (add/remove adjacency). Clients differ in ``n_k`` and so in ``q_k`` and step
        count; the account is the worst (largest epsilon) over the clients. Client row counts
        are treated as public, and the other clients' updates (which shape the global model a
        client starts each round from) as independent of the record.
        """
        epsilons = []
        for n in sorted(set(shape.client_train_sizes)):
            steps = shape.local_epochs * self.steps_per_epoch(n) * shape.num_rounds
            q = self.rate(n)
            eps = (
                math.inf
                if self.noise_multiplier == 0
                else gaussian_epsilon(self.noise_multiplier, steps, self.delta, q)
            )
            epsilons.append((eps, n, q, steps))
        eps, n, q, steps = max(epsilons)
        return PrivacyAccount(
            epsilon=eps,
            delta=self.delta,
            unit="record",
            accountant=ACCOUNTANT,
            assumptions=(
                f"DP-SGD on each client: Gaussian noise multiplier {self.noise_multiplier:g} on "
                f"per-sample gradients clipped to {self.clip_norm:g}, Poisson sampling; worst "
                f"client has {n} rows: q={q:.4g}, {steps} steps over {shape.num_rounds} rounds "
                f"x {shape.local_epochs} epochs; add/remove one record; protects every model "
                "a client sends, against the server too"
            ),
        )


class DPSGDModel(ModelWrapper):
    """A :class:`~fedgen.models.Model` whose ``fit`` is DP-SGD on the inner model's gradients.

    Everything but ``fit`` is the inner model's. The state a client keeps is only the round
    counter ``dp_sgd_round`` (the inner optimiser's state is not used).
    """

    def __init__(self, inner: Model, defense: DPSGD) -> None:
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
        """``epochs * steps_per_epoch(n)`` DP-SGD steps from ``params`` (module docstring)."""
        d = self.defense
        round_ = 1 if state is None else int(np.asarray(state[ROUND_KEY]).reshape(-1)[0]) + 1
        rng = child_rng(seed, f"defense/{d.name}/round/{round_}")
        n = X.shape[0]
        q = d.rate(n)
        expected = q * n
        noise_std = d.noise_multiplier * d.clip_norm if d.noise_multiplier > 0 else 0.0
        theta = flatten(params).copy()
        for _ in range(epochs * d.steps_per_epoch(n)):
            rows = np.flatnonzero(rng.random(n) < q)
            noise = rng.normal(0.0, noise_std, theta.shape[0])
            total = np.zeros_like(theta)
            if rows.size:
                grads = self.inner.per_sample_gradients(unflatten(theta, params), X[rows], y[rows])
                total = clip_rows(grads, d.clip_norm).sum(axis=0)
            theta -= d.learning_rate * ((total + noise) / expected + d.weight_decay * theta)
        return unflatten(theta, params), {ROUND_KEY: np.array([float(round_)])}

"""LiRA, offline: membership from a candidate's confidence calibrated on reference federations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

from fedgen.attacks.base import Arena, Observation, check_threshold
from fedgen.attacks.genotypes import row_chunks, take
from fedgen.attacks.membership import MODEL_OF_OBSERVER
from fedgen.attacks.observers import OBSERVERS, check_observer
from fedgen.attacks.signals import ModelChoice, decision_values
from fedgen.attacks.views import MembershipView, membership_view
from fedgen.core import progress
from fedgen.core.errors import ConfigError
from fedgen.core.forked import available_cores
from fedgen.core.records import AttackResult
from fedgen.core.seeding import child_rng
from fedgen.models.stacked import SGDRule, StackedFederations, sgd_rule, train_stacked


@dataclass(frozen=True)
class LiRAView:
    """The candidates and the attacked models, plus what the attacker needs to mimic training.

    Attributes
    ----------
    target : MembershipView
        The candidates (records, labels, client asked about) and the server's record.
    rule : SGDRule
        The model's SGD settings (the recipe, which every observer knows).
    reference_X : ndarray of int8, shape (N, p)
        Reference individuals' genotypes (the attacker's own data; none is a candidate), as
        the cohort holds them (the reference training casts a few rows at a time).
    reference_y : ndarray of int8, shape (N,)
    sizes : ndarray of int64, shape (C,)
        Training rows per client of the target federation.
    rounds, epochs : int
        FedAvg rounds and local epochs of the target federation.
    seed : int
        The experiment's seed, for the attacker's own streams.
    """

    target: MembershipView
    rule: SGDRule
    reference_X: NDArray[np.int8]
    reference_y: NDArray[np.int8]
    sizes: NDArray[np.int64]
    rounds: int
    epochs: int
    seed: int


class LiRAMIA:
    """LiRA, offline variant (Carlini et al. 2022, *Membership inference attacks from first
    principles*, Algorithm 1 without IN models).

    Threat model: the observer (``public`` by default: the final global model; ``peer``: the
    same; ``server``: the last model each candidate's own client returned) holds the candidates
    with their labels, knows the training recipe (number of clients and their training rows,
    rounds, local epochs, model settings) and holds reference individuals from the same
    population (``cohort.reference``), none of them a candidate. It trains ``k`` reference
    federations that mimic the recipe on random draws of the reference individuals, so every
    reference model is OUT for every candidate.

    Statistic: ``phi`` = the logit-scaled confidence in the true label, i.e. the signed logit
    margin from ``decision_function``. Per candidate, a Gaussian is fitted to its ``phi`` under
    the ``k`` reference models (the server's: each reference federation's client of the same
    index); ``z = (phi_target - mu_out) / sigma_out`` ranks (one-sided: members are fitted more
    confidently) and the score is ``Phi(z)``, called a member when at least ``threshold`` (0.99
    by default: about 1% false positives if the Gaussian null holds). With ``fixed_variance``
    (the paper's choice for few reference models) ``sigma_out`` is one pooled within-candidate
    SD for all candidates, else each candidate's own SD (both with ddof = 1).

    Assumptions: the model is an :class:`fedgen.models.SGDLogistic` (the reference federations
    are trained batched, :mod:`fedgen.models.stacked`); every client trains every round
    (FedAvg weighted by rows); defenses are not mimicked. Rows per client are the sample counts
    the server saw; for ``peer`` and ``public`` the same numbers, as the published recipe
    gives them (cohort size, number of clients and test fraction fix them). Each reference
    federation draws its rows without replacement, so the reference must hold at least the
    target's training rows. The baseline ``confidence`` is ``phi`` alone (the uncalibrated
    confidence attack, ``lira/confidence_auc``).

    Parameters
    ----------
    name : str
        The attack's key in the ``attack`` config group (default ``lira``).
    observer : {"server", "peer", "public"}
    threshold : float in [0, 1]
        On the scores ``Phi(z)``.
    k : int >= 2
        Reference federations.
    fixed_variance : bool
    local_epochs : int >= 1
        Local epochs per round of the target federation (``${federation.local_epochs}``).
    workers : int >= 1 or None
        Processes that train the reference federations (None: one per available core). The
        scores are the same bit for bit whatever the number.
    """

    kind: ClassVar[str] = "membership"
    observers: ClassVar[tuple[str, ...]] = OBSERVERS

    def __init__(
        self,
        name: str = "",
        observer: str | None = None,
        threshold: float = 0.99,
        k: int = 16,
        fixed_variance: bool = True,
        local_epochs: int = 1,
        workers: int | None = None,
    ) -> None:
        self.name = name or "lira"
        self.observer = check_observer(self.name, observer or "public", self.observers)
        self.model: ModelChoice = MODEL_OF_OBSERVER[self.observer]
        self.threshold = check_threshold(self.name, threshold)
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ConfigError(f"attack.{self.name}.k={k!r} must be an integer >= 2; e.g. set 16")
        if not isinstance(fixed_variance, bool):
            raise ConfigError(f"attack.{self.name}.fixed_variance={fixed_variance!r}: true|false")
        if isinstance(local_epochs, bool) or not isinstance(local_epochs, int) or local_epochs < 1:
            raise ConfigError(
                f"attack.{self.name}.local_epochs={local_epochs!r} must be a positive integer "
                "(the federation's, ${federation.local_epochs})"
            )
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise ConfigError(
                f"attack.{self.name}.workers={workers!r} must be a positive integer or null "
                "(one per available core)"
            )
        self.k, self.fixed_variance, self.local_epochs = k, fixed_variance, local_epochs
        self.workers = workers

    def observe(self, arena: Arena) -> Observation[LiRAView]:
        """The candidates, the recipe and the reference individuals; membership stays out."""
        rule = sgd_rule(arena.model)
        if rule is None:
            raise ConfigError(
                f"{self.name} trains reference federations batched for linear models only; use "
                f"model=sgd_logistic or model=sgd_logistic_fit (not {arena.model.name})"
            )
        ref = arena.cohort.reference
        if ref is None or ref.n_individuals == 0:
            raise ConfigError(
                f"attack {self.name} calibrates on reference individuals and the cohort has "
                "none; set dataset.n_reference (synthetic) or dataset.reference_fraction (csv)"
            )
        if not arena.server.rounds:
            raise ConfigError(f"attack {self.name} needs a trained federation (no rounds)")
        sizes = np.array(arena.server.rounds[-1].client_num_examples, np.int64)
        if self.observer != "server" and arena.split is not None:
            sizes = np.array([c.train.shape[0] for c in arena.split.clients], np.int64)
        if sizes.sum() > ref.n_individuals:
            raise ConfigError(
                f"attack {self.name} trains each reference federation on {sizes.sum()} rows "
                f"(as many as the target federation) but the cohort has {ref.n_individuals} "
                f"reference individuals; set dataset.n_reference >= {sizes.sum()}"
            )
        obs = membership_view(arena)
        view = LiRAView(
            target=obs.view,
            rule=rule,
            reference_X=ref.genotypes,
            reference_y=ref.labels,
            sizes=sizes,
            rounds=len(arena.server.rounds),
            epochs=self.local_epochs,
            seed=arena.seed,
        )
        return Observation(view=view, truth=obs.truth, clients=obs.clients)

    def train_references(
        self, view: LiRAView, on_round: Callable[[int], None] | None = None
    ) -> StackedFederations:
        """The ``k`` reference federations, trained batched on draws of the reference rows.

        ``on_round`` is called with 1 after each of the ``view.rounds`` FedAvg rounds.
        """
        n_ref, total = view.reference_X.shape[0], int(view.sizes.sum())
        draw = child_rng(view.seed, f"attack/{self.name}/reference-rows")
        rows = np.stack([draw.permutation(n_ref)[:total] for _ in range(self.k)])
        initial = view.target.model.init_params(view.reference_X.shape[1], 0)
        return train_stacked(
            view.reference_X,
            view.reference_y,
            rows,
            view.sizes,
            rounds=view.rounds,
            epochs=view.epochs,
            rule=view.rule,
            rngs=[
                child_rng(view.seed, f"attack/{self.name}/reference-order/{k}")
                for k in range(self.k)
            ],
            initial_coef=initial["coef"],
            initial_intercept=float(initial["intercept"][0]),
            workers=available_cores() if self.workers is None else self.workers,
            on_round=on_round,
        )

    def run(self, view: LiRAView) -> AttackResult:
        """Score each candidate by its confidence's z-score under the reference models."""
        t = view.target
        phi = signed_margins_target(t, self.model)
        with progress.step("reference federations", view.rounds) as done:
            refs = self.train_references(view, on_round=done)
        n = t.labels.shape[0]
        if self.model == "global":
            groups: list[tuple[int | None, NDArray[np.intp]]] = [(None, np.arange(n))]
        else:
            groups = [(int(c), np.flatnonzero(t.clients == c)) for c in np.unique(t.clients)]
        out = np.empty((n, self.k))  # each candidate's logit under every reference model
        for client, rows in groups:
            for part in row_chunks(rows, t.records.shape[1]):
                out[part] = refs.logits(take(t.records, part), client)
        np.negative(out, out=out, where=(t.labels == 0)[:, None])  # signed margins
        z = gaussian_z(phi, out, self.fixed_variance)
        return AttackResult(
            self.name,
            np.asarray(ndtr(z), np.float64),
            True,
            ranks=z,
            baselines={"confidence": phi},
        )


def signed_margins_target(view: MembershipView, choice: ModelChoice) -> NDArray[np.float64]:
    """Each candidate's signed logit margin on the model its observer attacks, float64 (n,)."""
    z = decision_values(view.model, view.server, choice, view.records, view.clients)
    return np.asarray(np.where(view.labels == 1, z, -z), np.float64)


def gaussian_z(
    phi: NDArray[np.float64], out: NDArray[np.float64], fixed_variance: bool
) -> NDArray[np.float64]:
    """One-sided z of ``phi`` (n,) under a Gaussian fitted to each row of ``out`` (n, k).

    ``fixed_variance``: one SD for all rows, the square root of the mean within-row variance;
    else each row's own. Both with ddof = 1; an SD of 0 is floored at the smallest normal float.
    """
    mu = out.mean(axis=1)
    var = out.var(axis=1, ddof=1)
    sd = np.sqrt(np.full_like(var, var.mean()) if fixed_variance else var)
    with np.errstate(over="ignore"):
        return np.asarray((phi - mu) / np.maximum(sd, np.finfo(np.float64).tiny), np.float64)

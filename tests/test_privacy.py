"""Accounted epsilon beside the empirical audit: the bound never exceeds what DP allows."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from fedgen.attacks import Arena, ConfidenceMIA, GradientNormMIA
from fedgen.core.records import Cohort
from fedgen.core.seeding import child_rng
from fedgen.data import SyntheticCohort
from fedgen.defenses import ClientDP, PrivacyAccount
from fedgen.evaluation.assess import assess
from fedgen.evaluation.pools import BalancedPool
from fedgen.experiment.privacy import Privacy, account, audit_violations
from fedgen.federation import train_federation
from fedgen.models import SGDLogistic
from tests.conftest import make_split, settings

ROUNDS = 2


@pytest.fixture(scope="module")
def leaky() -> Cohort:
    return SyntheticCohort(n_individuals=400, n_snps=1500, n_causal=20).load(child_rng(5, "cohort"))


def _account(name: str, eps: float, unit: str, observers: tuple[str, ...]) -> PrivacyAccount:
    return PrivacyAccount(eps, 1e-5, unit, "test", "test", observers)


def test_only_the_observers_a_guarantee_covers_are_audited() -> None:
    central = Privacy({"central_dp": _account("central_dp", 0.5, "client", ("public",))})
    bounds = {"mia_server": ("server", 2.5), "mia_public": ("public", 0.9), "gmia": ("public", 1.2)}
    # Client level: a record's replacement is bounded by 2 epsilon = 1.0.
    assert audit_violations(central, bounds) == {"gmia": (1.2, 1.0)}
    assert central.record_epsilon("server") is None


def test_accounts_compose_and_say_their_unit() -> None:
    both = Privacy(
        {
            "a": _account("a", 1.0, "client", ("server", "public")),
            "b": _account("b", 0.5, "record", ("server", "public")),
        }
    )
    assert (both.epsilon, both.unit) == (1.5, "mixed")
    assert both.record_epsilon("server") == 2.5
    assert both.metrics()["privacy/a/epsilon"] == 1.0
    assert Privacy({}).metrics() == {}


class _Broken(ClientDP):
    """Claims its noise multiplier in the account but sends clean updates: the audit's target."""

    def client_mods(self, seed: int) -> Sequence[Any]:
        return []


def _audit(cohort: Cohort, defense: ClientDP) -> tuple[Privacy, dict[str, tuple[str, float]]]:
    split = make_split(cohort, 2, seed=1)
    model = SGDLogistic(learning_rate="constant", eta0=0.001)
    fed = settings(2, ROUNDS, local_epochs=5)
    result = train_federation(cohort, split, fed, model, 3, [defense])
    privacy = account([defense], fed, split)
    pool = BalancedPool(n_bootstrap=0).pool(split, child_rng(3, "evaluation"))
    arena = Arena(cohort, pool, result, 3, model)
    bounds = {}
    for attack in (
        ConfidenceMIA("mia_server", observer="server"),
        GradientNormMIA(observer="public"),
    ):
        a = assess(attack, arena, 0, privacy.delta)
        bounds[attack.name] = (attack.observer, a.metrics["epsilon_lower_bound"])
    return privacy, bounds


@pytest.mark.parametrize("sigma", [0.3, 1.0, 4.0, 16.0])
def test_client_dp_audit_never_exceeds_its_accounted_epsilon(leaky: Cohort, sigma: float) -> None:
    privacy, bounds = _audit(leaky, ClientDP(clip_norm=10.0, noise_multiplier=sigma))
    assert np.isfinite(privacy.epsilon)
    assert audit_violations(privacy, bounds) == {}


def test_the_audit_catches_a_defense_that_does_not_add_its_noise(leaky: Cohort) -> None:
    honest_privacy, honest = _audit(leaky, ClientDP(clip_norm=10.0, noise_multiplier=16.0))
    broken_privacy, broken = _audit(leaky, _Broken(clip_norm=10.0, noise_multiplier=16.0))
    assert broken_privacy.epsilon == honest_privacy.epsilon  # the same claim
    assert audit_violations(honest_privacy, honest) == {}
    assert set(audit_violations(broken_privacy, broken)) >= {"mia_server"}


def test_privacy_tags_name_the_accountant_and_assumptions() -> None:
    split = make_split(SyntheticCohort(n_individuals=100, n_snps=20).load(child_rng(0, "c")), 2)
    fed = dataclasses.replace(settings(2, 3))
    privacy = account([ClientDP(clip_norm=1.0, noise_multiplier=1.0)], fed, split)
    tags = privacy.tags()
    assert tags["privacy.unit"] == "client"
    assert "3 rounds" in tags["privacy.client_dp.assumptions"]
    assert tags["privacy.client_dp.accountant"]

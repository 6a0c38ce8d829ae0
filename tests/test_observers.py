"""Observers (threat models): what the server, a peer and the public see of the training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedgen.attacks import ConfidenceMIA, GradientNormMIA
from fedgen.attacks.observers import OBSERVERS, check_observer, observe_training
from fedgen.core.errors import ConfigError, DataError
from fedgen.core.records import Cohort, FederationResult, RoundRecord
from fedgen.core.seeding import child_rng
from fedgen.data import CsvCohort, SyntheticCohort
from fedgen.federation import train_federation
from fedgen.models import SGDLogistic
from fedgen.models.base import flatten
from tests.conftest import make_split, settings


@pytest.fixture(scope="module")
def trained(tiny_cohort: Cohort) -> FederationResult:
    split = make_split(tiny_cohort, 3)
    return train_federation(tiny_cohort, split, settings(3, 2), SGDLogistic(), seed=1)


def test_server_sees_every_client_update_and_they_average_to_the_global_one(
    trained: FederationResult,
) -> None:
    view = observe_training(trained, "server")
    assert (view.num_rounds, view.num_clients) == (2, 3)
    assert view.initial is trained.initial_params
    for r in (1, 2):
        updates = view.client_updates(r)
        assert updates.shape == (3, 21)
        weights = np.asarray(view.client_counts[r - 1], np.float64)
        # FedAvg: the global update is the sample-weighted mean of the client updates.
        mean = weights @ updates / weights.sum()
        np.testing.assert_allclose(view.global_update(r), mean, atol=1e-10)
        np.testing.assert_array_equal(view.client_update(r, 1), updates[1])
    assert view.round_start(2) is trained.rounds[0].global_params


def test_peer_sees_global_models_only_and_public_only_the_final_one(
    trained: FederationResult,
) -> None:
    peer = observe_training(trained, "peer")
    assert peer.num_clients == 0 and peer.client_params == () and peer.client_counts == ()
    assert len(peer.globals) == 2
    public = observe_training(trained, "public")
    assert public.initial is None and public.num_rounds == 1
    np.testing.assert_array_equal(flatten(public.final), flatten(trained.final_params))
    with pytest.raises(ValueError, match="does not see"):
        public.round_start(1)


def test_under_secure_aggregation_the_aggregate_stands_in_for_every_client(
    trained: FederationResult,
) -> None:
    rounds = tuple(
        RoundRecord(r.round, r.global_params, (), r.client_num_examples, r.metrics, True)
        for r in trained.rounds
    )
    view = observe_training(FederationResult(trained.initial_params, rounds), "server")
    assert view.aggregate_only and view.num_clients == 3
    updates = view.client_updates(2)
    np.testing.assert_array_equal(updates, np.broadcast_to(view.global_update(2), updates.shape))


def test_check_observer_names_the_key_and_the_choices() -> None:
    assert check_observer("lrt", "server", ("server", "peer")) == "server"
    with pytest.raises(ConfigError, match=r"attack\.lrt\.observer.*server, peer"):
        check_observer("lrt", "public", ("server", "peer"))
    with pytest.raises(ConfigError, match=r"attack\.lrt\.observer='hospital' is not an observer"):
        check_observer("lrt", "hospital", ("server", "peer"))
    assert set(OBSERVERS) == {"server", "peer", "public"}


def test_membership_attacks_take_an_observer_and_still_the_old_model_option() -> None:
    assert ConfidenceMIA(observer="server").model == "client"
    assert ConfidenceMIA(observer="peer").model == "global"
    assert GradientNormMIA().observer == "public"
    assert GradientNormMIA(model="client").observer == "server"
    assert GradientNormMIA(model="global", observer="peer").observer == "peer"
    with pytest.raises(ConfigError, match="contradicts"):
        GradientNormMIA(model="client", observer="public")


def test_reference_individuals_leave_the_cohort_unchanged_and_share_its_population() -> None:
    source = SyntheticCohort(n_individuals=4000, n_snps=50, n_causal=10, heritability=0.5)
    plain = source.load(child_rng(3, "cohort"))
    with_ref = SyntheticCohort(**{**source.__dict__, "n_reference": 4000}).load(
        child_rng(3, "cohort")
    )
    np.testing.assert_array_equal(plain.genotypes, with_ref.genotypes)
    np.testing.assert_array_equal(plain.labels, with_ref.labels)
    assert plain.reference is None
    ref = with_ref.reference
    assert ref is not None and ref.genotypes.shape == (4000, 50) and ref.reference is None
    # Same allele frequencies (SE of a frequency ~ 0.005 here) and prevalence (SE ~ 0.008).
    freq = plain.genotypes.mean(axis=0) / 2
    ref_freq = ref.genotypes.mean(axis=0) / 2
    assert np.max(np.abs(freq - ref_freq)) < 0.035
    assert abs(ref.labels.mean() - 0.5) < 0.04
    # The same phenotype model: the causal SNPs carry the same direction of effect.
    causal = np.flatnonzero(plain.metadata["causal"])
    r_cohort = [np.corrcoef(plain.genotypes[:, j], plain.labels)[0, 1] for j in causal]
    r_ref = [np.corrcoef(ref.genotypes[:, j], ref.labels)[0, 1] for j in causal]
    assert np.corrcoef(r_cohort, r_ref)[0, 1] > 0.8


def test_csv_reference_fraction_sets_rows_aside(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    rows = ["snp_a,snp_b,label"] + [f"{i % 3},{(i + 1) % 3},{i % 2}" for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    whole = CsvCohort(str(path)).load(child_rng(0, "cohort"))
    assert whole.reference is None and whole.n_individuals == 40
    split = CsvCohort(str(path), reference_fraction=0.25).load(child_rng(0, "cohort"))
    assert split.n_individuals == 30 and split.reference is not None
    assert split.reference.n_individuals == 10
    together = np.concatenate([split.genotypes, split.reference.genotypes])
    assert sorted(map(tuple, together)) == sorted(map(tuple, whole.genotypes))
    with pytest.raises(DataError, match="reference_fraction"):
        CsvCohort(str(path), reference_fraction=1.0).load(child_rng(0, "cohort"))

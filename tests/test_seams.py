"""The seams: record at the Grid, the defense seam, the cache key, per-attack thresholds."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Context, Message
from flwr.serverapp.strategy import FedAvg
from omegaconf import DictConfig, OmegaConf

from fedgen.attacks import Arena, GradientNormMIA
from fedgen.attacks.views import membership_view
from fedgen.core.errors import ConfigError
from fedgen.core.records import Cohort, FederationResult, Params
from fedgen.core.seeding import child_rng
from fedgen.defenses import BaseDefense, defense_rng
from fedgen.evaluation.assess import assess
from fedgen.evaluation.pools import PaperPool
from fedgen.experiment import build, cache
from fedgen.experiment.build import POST_TRAINING_KEYS, TRAINING_KEYS, build_experiment
from fedgen.federation import train_federation
from fedgen.federation.arrays import from_record, to_record
from fedgen.figures.run import run_figures
from fedgen.models import SGDLogistic
from tests.conftest import make_split, settings


class ScaleUpdates(BaseDefense):
    """Test-only defense: each client sends ``global + factor * update`` (+ optional noise).

    The noise is drawn from the defense's named stream of the seed, as every real defense must.
    """

    def __init__(self, name: str = "scale", factor: float = 0.5, noise: float = 0.0) -> None:
        super().__init__(name)
        self.factor, self.noise = factor, noise

    def client_mods(self, seed: int) -> Sequence[Any]:
        def mod(msg: Message, context: Context, call_next: Callable[..., Message]) -> Message:
            reply = call_next(msg, context)
            sent = from_record(msg.content.array_records["arrays"])
            got = from_record(reply.content.array_records["arrays"])
            rng = defense_rng(seed, self.name, msg, context)
            scaled: Params = {
                k: sent[k]
                + self.factor * (got[k] - sent[k])
                + self.noise * rng.standard_normal(got[k].shape)
                for k in got
            }
            reply.content.array_records["arrays"] = to_record(scaled)
            return reply

        return [mod]


class CountingWrapper(FedAvg):
    """Test-only server-side wrapper: adds 1 to every aggregate (what the server then sends)."""

    def __init__(self, inner: FedAvg) -> None:
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=inner.min_train_nodes,
            min_evaluate_nodes=inner.min_evaluate_nodes,
            min_available_nodes=inner.min_available_nodes,
        )

    def aggregate_train(self, server_round: int, replies: Any) -> Any:
        arrays, metrics = super().aggregate_train(server_round, replies)
        shifted = {k: v + 1.0 for k, v in from_record(arrays).items()}
        return to_record(shifted), metrics


class ShiftAggregate(BaseDefense):
    def __init__(self) -> None:
        super().__init__("shift")

    def wrap_strategy(self, strategy: Any, seed: int, num_clients: int) -> Any:
        return CountingWrapper(strategy)


def _train(cohort: Cohort, defenses: Sequence[Any] = (), rounds: int = 2) -> FederationResult:
    split = make_split(cohort, 3)
    return train_federation(cohort, split, settings(3, rounds), SGDLogistic(), 7, defenses)


def test_record_holds_what_a_client_side_mod_sent(tiny_cohort: Cohort) -> None:
    plain = _train(tiny_cohort)
    scaled = _train(tiny_cohort, [ScaleUpdates(factor=0.5)])
    first_plain, first_scaled = plain.rounds[0], scaled.rounds[0]
    # Round 1 starts from zeros: each client sent exactly half of its undefended update.
    for mine, theirs in zip(first_scaled.client_params, first_plain.client_params, strict=True):
        for k in mine:
            np.testing.assert_array_equal(mine[k], 0.5 * theirs[k])
    # The server averaged what it received, so the global model is halved too.
    for k in first_plain.global_params:
        np.testing.assert_allclose(
            first_scaled.global_params[k], 0.5 * first_plain.global_params[k], rtol=1e-12
        )
    assert not np.array_equal(scaled.final_params["coef"], plain.final_params["coef"])


def test_attacks_read_the_defended_record(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 3)
    pool = PaperPool(n_bootstrap=0).pool(split, child_rng(0, "evaluation"))
    model = SGDLogistic()
    scores = {}
    for name, defenses in (("plain", []), ("scaled", [ScaleUpdates(factor=0.0)])):
        result = train_federation(tiny_cohort, split, settings(3, 2), model, 7, defenses)
        arena = Arena(tiny_cohort, pool, result, 7, model)
        view = membership_view(arena).view
        assert view.server is result  # the attacker's view is built from the record
        scores[name] = GradientNormMIA(model="client").run(view).scores
    # factor 0: every client returns the global model it got, all zeros: every residual is 1/2.
    assert not np.allclose(scores["plain"], scores["scaled"])
    x = tiny_cohort.genotypes[pool.rows].astype(float)
    expected = 0.5 * np.sqrt((x * x).sum(axis=1) + 1) / np.sqrt(4 * x.shape[1] + 1)
    np.testing.assert_allclose(scores["scaled"], expected, rtol=1e-12)


def test_record_holds_what_a_server_side_wrapper_sent(tiny_cohort: Cohort) -> None:
    plain = _train(tiny_cohort, rounds=1)
    shifted = _train(tiny_cohort, [ShiftAggregate()], rounds=1)
    for k in plain.final_params:
        np.testing.assert_allclose(
            shifted.final_params[k], plain.final_params[k] + 1.0, rtol=0, atol=1e-12
        )
    # What the clients returned in round 1 did not change: only what the server sent.
    for a, b in zip(plain.rounds[0].client_params, shifted.rounds[0].client_params, strict=True):
        np.testing.assert_array_equal(a["coef"], b["coef"])


def test_defense_noise_comes_from_the_seed_not_the_global_state(tiny_cohort: Cohort) -> None:
    noisy = [ScaleUpdates(factor=1.0, noise=0.1)]
    np.random.seed(1)  # noqa: NPY002  (the global state must not matter)
    first = _train(tiny_cohort, noisy)
    np.random.seed(2)  # noqa: NPY002
    second = _train(tiny_cohort, noisy)
    clean = _train(tiny_cohort)
    for a, b in zip(first.rounds, second.rounds, strict=True):
        for pa, pb in zip(a.client_params, b.client_params, strict=True):
            np.testing.assert_array_equal(pa["coef"], pb["coef"])
    assert not np.array_equal(first.final_params["coef"], clean.final_params["coef"])


def test_defenses_compose_in_their_configured_order(tiny_cohort: Cohort) -> None:
    # Halve, then add noise: the noise is not halved. Noise, then halve: it is.
    halve, jitter = ScaleUpdates("halve", 0.5), ScaleUpdates("jitter", 1.0, noise=1.0)
    a = _train(tiny_cohort, [halve, jitter], rounds=1).rounds[0].client_params[0]["coef"]
    b = _train(tiny_cohort, [jitter, halve], rounds=1).rounds[0].client_params[0]["coef"]
    plain = _train(tiny_cohort, rounds=1).rounds[0].client_params[0]["coef"]
    noise_a, noise_b = a - 0.5 * plain, b - 0.5 * plain
    np.testing.assert_allclose(noise_b, 0.5 * noise_a, rtol=1e-9, atol=1e-12)


def test_every_top_level_key_is_declared_training_or_post_training(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    cfg = compose_cfg()
    declared = set(TRAINING_KEYS) | set(POST_TRAINING_KEYS)
    assert not set(TRAINING_KEYS) & set(POST_TRAINING_KEYS)
    top = {str(k) for k in cfg if k != "hydra"}
    assert top == declared, f"declare {sorted(top - declared)} in fedgen.experiment.build"


def test_training_material_ignores_backend_and_post_training_keys(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    def material(*overrides: str) -> dict[str, Any]:
        resolved = OmegaConf.to_container(compose_cfg(*overrides), resolve=True)
        assert isinstance(resolved, dict)
        return build.training_material(resolved)

    base = material()
    assert material("federation/backend=ray") == base
    assert material("threshold=0.3", "attack=gmia", "evaluation=balanced") == base
    assert material("seed=1") != base
    assert material("model=sgd_logistic_fit") != base
    assert material("+model.alpha=0.001") != base


def _experiment(cfg: DictConfig, tmp_path: Path) -> Any:
    return build_experiment(cfg, launch_dir=tmp_path, output_dir=tmp_path / "out")


def test_cache_misses_when_code_or_library_versions_change(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedgen.experiment import pipeline

    cfg = compose_cfg("dataset=tiny", "federation.num_rounds=2", "tracking=none", "figures=false")
    exp = _experiment(cfg, tmp_path)
    cohort, split = pipeline.cohort_and_split(exp.training)
    key = pipeline._cache_key(exp, pipeline.cohort_digest(cohort), split)
    assert key == pipeline._cache_key(exp, pipeline.cohort_digest(cohort), split)
    monkeypatch.setattr(pipeline, "code_digest", lambda: "0" * 64)
    changed_code = pipeline._cache_key(exp, pipeline.cohort_digest(cohort), split)
    monkeypatch.undo()
    monkeypatch.setattr(
        pipeline, "library_versions", lambda: {**cache.library_versions(), "scikit-learn": "0.1"}
    )
    changed_library = pipeline._cache_key(exp, pipeline.cohort_digest(cohort), split)
    monkeypatch.undo()
    genotypes = cohort.genotypes.copy()
    genotypes[0, 0] = (genotypes[0, 0] + 1) % 3  # one call differs: another cohort
    other = replace(cohort, genotypes=genotypes)
    changed_cohort = pipeline._cache_key(exp, pipeline.cohort_digest(other), split)
    assert len({key, changed_code, changed_library, changed_cohort}) == 4


def test_code_digest_covers_the_training_code() -> None:
    import fedgen

    root = Path(fedgen.__file__).parent
    files = {p.relative_to(root).as_posix() for p in root.rglob("*.py")}
    assert {"models/linear.py", "federation/apps.py", "defenses/base.py"} <= files
    assert len(cache.code_digest()) == 64


def test_stale_entry_is_not_reused_after_a_code_change(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedgen.experiment import pipeline

    cfg = compose_cfg(
        "dataset=tiny",
        "federation.num_rounds=2",
        "tracking=none",
        "figures=false",
        f"cache_dir={tmp_path / 'cache'}",
        "attack=mia",
    )
    first = pipeline.run_experiment(_experiment(cfg, tmp_path / "a"))
    hit = pipeline.run_experiment(_experiment(cfg, tmp_path / "b"))
    assert hit.metrics == first.metrics
    monkeypatch.setattr(pipeline, "code_digest", lambda: "f" * 64)
    missed = _experiment(cfg, tmp_path / "c")
    cohort, split = pipeline.cohort_and_split(missed.training)
    assert missed.cache is not None
    assert (
        missed.cache.load(pipeline._cache_key(missed, pipeline.cohort_digest(cohort), split))
        is None
    )


def test_each_attack_has_its_own_threshold(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg("threshold=0.3", "attack.gmia.threshold=0.45")
    attacks = {name: node.threshold for name, node in cfg.attack.items()}
    assert attacks == {"mia": 0.3, "gmia": 0.45, "lia": 0.3}
    with pytest.raises(ConfigError, match=r"attack.gmia.threshold=1.5"):
        GradientNormMIA(threshold=1.5)


def test_assessment_uses_the_attacks_own_threshold(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 3)
    result = train_federation(tiny_cohort, split, settings(3, 2), SGDLogistic(), 7)
    pool = PaperPool(n_bootstrap=0).pool(split, child_rng(0, "evaluation"))
    arena = Arena(tiny_cohort, pool, result, 7, SGDLogistic())
    low, high = (
        assess(GradientNormMIA(threshold=0.05), arena, 0),
        assess(GradientNormMIA(threshold=0.95), arena, 0),
    )
    assert (low.threshold, high.threshold) == (0.05, 0.95)
    assert low.metrics["recall"] < high.metrics["recall"] == 1.0


def test_figures_follow_the_configured_attacks(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 3)
    model = SGDLogistic()
    result = train_federation(tiny_cohort, split, settings(3, 2), model, 7)
    pool = PaperPool(n_bootstrap=0).pool(split, child_rng(0, "evaluation"))
    arena = Arena(tiny_cohort, pool, result, 7, model)
    client = GradientNormMIA(model="client", threshold=0.2)
    done = [assess(client, arena, 0)]
    tasks = {t.function: t for t in run_figures(arena, [client], done, "tiny")}
    norms, _truth, threshold, _ = tasks["gradient_norm_histogram"].args
    np.testing.assert_array_equal(norms, done[0].result.scores)
    global_norms = GradientNormMIA().run(membership_view(arena).view).scores
    assert not np.array_equal(norms, global_norms)  # the client models, as configured
    assert threshold == 0.2
    from fedgen.attacks import ConfidenceMIA

    mia = ConfidenceMIA(threshold=0.7)
    only_mia = run_figures(arena, [mia], [assess(mia, arena, 0)], "tiny")
    assert "gradient_norm_histogram" not in {t.function for t in only_mia}
    curves = [t for t in only_mia if t.function == "threshold_curves"]
    assert curves[0].args[4] == 0.7


def test_model_must_be_a_fedgen_model(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg("model._target_=sklearn.linear_model.SGDClassifier")
    with pytest.raises(ConfigError, match="not a fedgen model"):
        build.build_training(cfg)


def test_objective_must_name_a_metric_of_the_run(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="objective='lrt/auc'"):
        _experiment(compose_cfg("objective=lrt/auc", "tracking=none"), tmp_path)
    exp = _experiment(compose_cfg("objective=gmia/auc", "tracking=none"), tmp_path)
    assert exp.objective == "gmia/auc"


@pytest.mark.slow
# Ray leaves the Popen handles of its helper processes to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_mlp_federation_is_bit_identical_on_both_backends(tiny_cohort: Cohort) -> None:
    from fedgen.federation.runners import RayRunner
    from fedgen.models import MLP

    split = make_split(tiny_cohort, 3)
    model = MLP(hidden_units=4)
    inproc = train_federation(tiny_cohort, split, settings(3, 2), model, 11)
    ray = train_federation(tiny_cohort, split, settings(3, 2, backend=RayRunner()), model, 11)
    for a, b in zip(inproc.rounds, ray.rounds, strict=True):
        assert a.metrics == b.metrics
        for k in a.global_params:
            np.testing.assert_array_equal(a.global_params[k], b.global_params[k])
    # Hidden units start from the seed, not zeros, and all layers are averaged.
    assert np.abs(inproc.initial_params["W1"]).max() > 0
    assert not np.array_equal(inproc.final_params["W1"], inproc.initial_params["W1"])
    gc.collect()  # Ray's leaked handles, under this test's filter


def test_server_attacks_under_secagg_build_and_run_on_the_aggregate(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    exp = _experiment(compose_cfg("defense=secagg", "attack=observers", "tracking=none"), tmp_path)
    assert exp.params["defense"] == "secagg"
    assert [a.observer for a in exp.attacks] == ["server", "server", "public", "public"]

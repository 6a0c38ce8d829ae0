"""Tests for fedgen.figures.plots: the numbers drawn (against numpy, scikit-learn, metrics) and
that every figure renders to a titled, labelled PNG without pyplot."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from numpy.typing import NDArray
from sklearn.decomposition import PCA
from sklearn.metrics import log_loss, roc_auc_score, roc_curve

from fedgen.attacks import Arena, ConfidenceMIA
from fedgen.core.records import AttackResult, Cohort, FederationResult, Pool
from fedgen.evaluation.assess import Assessment, per_round_metrics
from fedgen.evaluation.metrics import roc, threshold_metrics, trivial_metrics
from fedgen.figures import plots
from fedgen.figures.base import Plot, save_png
from fedgen.figures.run import run_figures
from fedgen.models import SGDLogistic

SUBTITLE = "synthetic n=300 p=20 | 3 clients, 5 rounds | seed 7"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cohort(
    n: int = 300, p: int = 20, seed: int = 0
) -> tuple[NDArray[np.int8], NDArray[np.int8], list[str]]:
    """Genotypes 0/1/2 with SNPs 2 and 5 tied to the label (one each way)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.4).astype(np.int8)
    genotypes = rng.integers(0, 3, size=(n, p)).astype(np.int8)
    genotypes[:, 2] = np.where(labels == 1, np.minimum(genotypes[:, 2] + 1, 2), genotypes[:, 2])
    genotypes[:, 5] = np.where(labels == 1, np.maximum(genotypes[:, 5] - 1, 0), genotypes[:, 5])
    return genotypes, labels, [f"rs{100 + j}" for j in range(p)]


def _pool(n: int = 400, seed: int = 1) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Scores in [0, 1] with members higher, rounded to 2 decimals (many ties)."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.3
    scores = np.clip(np.round(rng.normal(0.45 + 0.15 * truth, 0.15), 2), 0.0, 1.0)
    return scores, truth


def _same_up_to_sign(a: NDArray[np.float64], b: NDArray[np.float64]) -> None:
    """Columns of ``a`` equal those of ``b`` up to one sign per column."""
    for j in range(a.shape[1]):
        sign = 1.0 if np.dot(a[:, j], b[:, j]) >= 0 else -1.0
        np.testing.assert_allclose(a[:, j], sign * b[:, j], rtol=1e-9, atol=1e-9)


def _legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [text.get_text() for text in legend.get_texts()]


# --- gradient_norm_histogram ------------------------------------------------------------------


def test_histogram_counts_match_numpy_on_shared_edges() -> None:
    rng = np.random.default_rng(3)
    member = rng.random(500) < 0.35
    norms = rng.gamma(2.0, 0.1, size=500) + 0.05 * ~member
    plot = plots.gradient_norm_histogram(norms, member, 0.21, SUBTITLE, bins=17)
    d = plot.data
    assert plot.name == "gradient_norm_histogram"
    np.testing.assert_array_equal(d["bin_edges"], np.histogram_bin_edges(norms, bins=17))
    assert d["member_counts"].sum() == member.sum()
    assert d["non_member_counts"].sum() == (~member).sum()
    np.testing.assert_array_equal(
        d["member_counts"], np.histogram(norms[member], d["bin_edges"])[0]
    )
    np.testing.assert_array_equal(
        d["non_member_counts"], np.histogram(norms[~member], d["bin_edges"])[0]
    )
    assert d["threshold"] == 0.21
    ax = plot.figure.axes[0]
    legend = _legend_texts(ax)
    assert "threshold t=0.21" in legend
    assert f"members (n={member.sum()})" in legend
    assert ax.get_xlabel() == plots.GRADIENT_NORM_LABEL


def test_histogram_rejects_mismatched_or_non_boolean_membership() -> None:
    with pytest.raises(ValueError, match="shape"):
        plots.gradient_norm_histogram(np.ones(5), np.ones(4, dtype=bool), 0.5, SUBTITLE)
    with pytest.raises(ValueError, match="boolean"):
        plots.gradient_norm_histogram(np.ones(3), np.array([0, 2, 1]), 0.5, SUBTITLE)


# --- snp_pca ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(80, 12), (9, 25)])  # Gram route (p <= n) and SVD route
def test_pca_matches_sklearn(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(4)
    genotypes = rng.integers(0, 3, size=shape).astype(np.int8)
    genotypes[:, 1] = genotypes[:, 0] * 2 // 2 + rng.integers(0, 2, size=shape[0])  # structure
    labels = rng.integers(0, 2, size=shape[0])
    plot = plots.snp_pca(genotypes, labels, SUBTITLE, np.random.default_rng(0))
    reference = PCA(n_components=2, svd_solver="full").fit(genotypes.astype(np.float64))
    np.testing.assert_allclose(
        plot.data["explained_variance_ratio"], reference.explained_variance_ratio_, rtol=1e-10
    )
    np.testing.assert_array_equal(plot.data["rows"], np.arange(shape[0]))
    _same_up_to_sign(plot.data["scores"], reference.transform(genotypes.astype(np.float64)))
    np.testing.assert_array_equal(plot.data["labels"], labels)
    ratio = plot.data["explained_variance_ratio"]
    ax = plot.figure.axes[0]
    assert ax.get_xlabel() == f"PC1 ({100 * ratio[0]:.1f}% variance)"
    assert ax.get_ylabel() == f"PC2 ({100 * ratio[1]:.1f}% variance)"
    assert {text.split(" (")[0] for text in _legend_texts(ax)} == {
        "label 0",
        "label 1",
    }


def test_pca_subsamples_points_but_not_the_components() -> None:
    genotypes, labels, _ = _cohort(n=300)
    plot = plots.snp_pca(genotypes, labels, SUBTITLE, np.random.default_rng(5), max_points=50)
    rows = plot.data["rows"]
    assert rows.shape == (50,)
    assert np.all(np.diff(rows) > 0) and rows.max() < 300  # sorted, distinct
    reference = PCA(n_components=2).fit(genotypes.astype(np.float64))  # fitted on all rows
    _same_up_to_sign(plot.data["scores"], reference.transform(genotypes[rows].astype(np.float64)))
    np.testing.assert_array_equal(plot.data["labels"], labels[rows])
    n_drawn = sum(np.asarray(c.get_offsets()).shape[0] for c in plot.figure.axes[0].collections)
    assert n_drawn == 50
    again = plots.snp_pca(genotypes, labels, SUBTITLE, np.random.default_rng(5), max_points=50)
    np.testing.assert_array_equal(again.data["rows"], rows)


# --- top_snp_correlations ---------------------------------------------------------------------


def test_top_correlations_are_the_largest_absolute_pearson_r_with_sign() -> None:
    genotypes, labels, names = _cohort()
    plot = plots.top_snp_correlations(genotypes, labels, names, SUBTITLE, k=10)
    expected_r = np.array(
        [np.corrcoef(genotypes[:, j].astype(float), labels.astype(float))[0, 1] for j in range(20)]
    )
    order = np.argsort(-np.abs(expected_r))[:10]
    assert plot.name == "top_snp_correlations"
    assert plot.data["names"] == [names[j] for j in order]
    np.testing.assert_allclose(plot.data["r"], expected_r[order], rtol=1e-12, atol=1e-12)
    assert plot.data["names"][:2] == ["rs102", "rs105"] or plot.data["names"][:2] == [
        "rs105",
        "rs102",
    ]
    r = dict(zip(plot.data["names"], plot.data["r"], strict=True))
    assert r["rs102"] > 0.1 and r["rs105"] < -0.1
    ax = plot.figure.axes[0]
    by_height = dict(
        zip(ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()], strict=True)
    )
    assert [by_height[y] for y in sorted(by_height, reverse=True)] == plot.data["names"]  # top down


def test_constant_snp_has_zero_correlation() -> None:
    genotypes, labels, names = _cohort(p=6)
    genotypes[:, 3] = 1
    r = plots.snp_label_correlations(genotypes, labels)
    assert r[3] == 0.0
    plot = plots.top_snp_correlations(genotypes, labels, names, SUBTITLE, k=6)
    assert plot.data["names"][-1] == names[3] and plot.data["r"][-1] == 0.0
    with pytest.raises(ValueError, match="snp_names"):
        plots.top_snp_correlations(genotypes, labels, names[:5], SUBTITLE)


# --- roc_curves -------------------------------------------------------------------------------


def test_roc_data_and_auc_match_sklearn() -> None:
    scores, truth = _pool()
    other = np.random.default_rng(9).random(truth.size)
    plot = plots.roc_curves(
        {"mia": (scores, truth), "noise": (other, truth)},
        {"mia": (0.1, 0.4)},
        SUBTITLE,
    )
    assert plot.name == "roc"
    for attack, s in (("mia", scores), ("noise", other)):
        curve = plot.data["curves"][attack]
        assert curve["auc"] == pytest.approx(roc_auc_score(truth, s), abs=1e-12)
        fpr, tpr = roc(s, truth)
        np.testing.assert_array_equal(curve["fpr"], fpr)
        np.testing.assert_array_equal(curve["tpr"], tpr)
    assert plot.data["x_floor"] == 1 / (~truth).sum()
    assert plot.data["y_floor"] == 1 / truth.sum()
    assert plot.data["operating_points"] == {"mia": (0.1, 0.4)}
    ax = plot.figure.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlim() == pytest.approx((plot.data["x_floor"], 1.0))
    legend = _legend_texts(ax)
    assert f"mia (AUC {plot.data['curves']['mia']['auc']:.3f})" in legend
    assert "chance" in legend


def test_roc_rejects_operating_points_without_curves_and_no_curves() -> None:
    scores, truth = _pool()
    with pytest.raises(ValueError, match="without a curve"):
        plots.roc_curves({"mia": (scores, truth)}, {"lia": (0.1, 0.2)}, SUBTITLE)
    with pytest.raises(ValueError, match="at least one"):
        plots.roc_curves({}, {}, SUBTITLE)


# --- threshold_curves -------------------------------------------------------------------------


@pytest.mark.parametrize("higher_is_positive", [True, False])
def test_threshold_curves_equal_threshold_metrics_at_every_grid_point(
    higher_is_positive: bool,
) -> None:
    scores, truth = _pool()
    attack = AttackResult("gmia", scores, higher_is_positive)
    plot = plots.threshold_curves("gmia", scores, truth, higher_is_positive, 0.5, SUBTITLE)
    d = plot.data
    assert plot.name == "threshold_curves_gmia"
    np.testing.assert_array_equal(d["thresholds"], np.linspace(0, 1, 201))  # on score ties too
    for i, t in enumerate(d["thresholds"]):
        expected = threshold_metrics(attack.predict(float(t)), truth)
        for key in ("precision", "recall", "f1"):
            assert d[key][i] == pytest.approx(expected[key], rel=1e-12, abs=0), (key, t)
    steps = np.diff(d["recall"])
    assert np.all(steps <= 0) if higher_is_positive else np.all(steps >= 0)
    assert steps.any()  # the check above is not vacuous
    assert d["trivial_f1"] == trivial_metrics(truth)["trivial_f1"]
    assert d["threshold"] == 0.5


def test_threshold_curves_conventions_at_the_extremes() -> None:
    scores, truth = _pool()
    grid = np.array([-1.0, scores.min(), scores.max(), 2.0])
    plot = plots.threshold_curves("mia", scores, truth, True, 0.5, SUBTITLE, grid=grid)
    d = plot.data
    # Below every score all are called: recall 1, precision = member share; above none: all 0.
    assert d["recall"][0] == 1.0 and d["precision"][0] == pytest.approx(truth.mean())
    assert d["precision"][-1] == 0.0 and d["recall"][-1] == 0.0 and d["f1"][-1] == 0.0
    top = scores == scores.max()
    assert d["precision"][2] == pytest.approx(truth[top].mean())
    np.testing.assert_array_equal(d["thresholds"], grid)


# --- training_curves --------------------------------------------------------------------------


def test_training_curves_data_and_validation() -> None:
    rounds = np.arange(1, 6)
    metrics = {
        "fed/train_loss": [0.69, 0.6, 0.55, 0.52, 0.5],
        "fed/test_loss": [0.69, 0.62, 0.58, 0.57, 0.57],
        "fed/train_accuracy": [0.5, 0.6, 0.65, 0.7, 0.72],
        "fed/test_accuracy": [0.5, 0.58, 0.6, 0.62, 0.62],
        "fed/client_0/train_loss": [1.0] * 5,  # ignored
    }
    plot = plots.training_curves(rounds, metrics, SUBTITLE)
    assert plot.name == "training_curves"
    assert set(plot.data) == {
        "rounds",
        *plots.TRAINING_KEYS,
        "chance_accuracy",
        "chance_loss",
        "accuracy_ylim",
    }
    for key in plots.TRAINING_KEYS:
        np.testing.assert_array_equal(plot.data[key], metrics[key])
    loss_ax, acc_ax = plot.figure.axes
    np.testing.assert_array_equal(loss_ax.get_lines()[1].get_ydata(), metrics["fed/test_loss"])
    np.testing.assert_array_equal(acc_ax.get_lines()[0].get_ydata(), metrics["fed/train_accuracy"])
    assert loss_ax.get_xlabel() == acc_ax.get_xlabel() == "FedAvg round"
    with pytest.raises(ValueError, match="fed/test_accuracy"):
        plots.training_curves(rounds, {k: metrics[k] for k in plots.TRAINING_KEYS[:3]}, SUBTITLE)
    with pytest.raises(ValueError, match="shape"):
        plots.training_curves(rounds[:4], metrics, SUBTITLE)


# --- client_auc_bars --------------------------------------------------------------------------


def test_client_auc_matrix_with_missing_clients() -> None:
    per_client = {"mia": {2: 0.7, 0: 0.6}, "gmia": {1: 0.55, 0: 0.52}}
    plot = plots.client_auc_bars(per_client, SUBTITLE)
    assert plot.name == "client_auc"
    assert plot.data["attacks"] == ["mia", "gmia"]
    assert plot.data["clients"] == [0, 1, 2]
    np.testing.assert_array_equal(plot.data["auc"], [[0.6, np.nan, 0.7], [0.52, 0.55, np.nan]])
    ax = plot.figure.axes[0]
    heights = sorted(p.get_height() for p in ax.patches if isinstance(p, Rectangle))
    assert heights == [0.52, 0.55, 0.6, 0.7]  # one bar per known AUC, none for missing
    assert "chance" in _legend_texts(ax)


# --- leakage_over_rounds ---------------------------------------------------------------------

SHIFTS = (0.3, 0.9, 1.6, 1.1, 0.5)  # members' mean shift per round: the leakiest is round 3


def _per_round_assessment(
    name: str, shifts: tuple[float, ...], n: int = 600, seed: int = 2
) -> Assessment:
    """An Assessment whose per-round statistics separate members by ``shifts[r - 1]`` SDs,
    with its ``rounds`` computed by the same function as `assess`."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.5
    per_round = tuple(rng.standard_normal(n) + shift * truth for shift in shifts)
    result = AttackResult(name, rng.random(n), True, per_round=per_round)
    rounds = {r: per_round_metrics(s, truth) for r, s in enumerate(per_round, start=1)}
    clients = np.zeros(n, dtype=np.int64)
    return Assessment(result, truth, clients, 0.5, {"auc": 0.5}, {}, rounds)


def _tpr_at_1pct(statistic: NDArray[np.float64], truth: NDArray[np.bool_]) -> float:
    fpr, tpr, _ = roc_curve(truth, statistic)
    return float(tpr[fpr <= 0.01].max())


def test_leakage_over_rounds_draws_each_rounds_auc_and_tpr_and_stars_the_leakiest() -> None:
    leaky = _per_round_assessment("lrt", SHIFTS)
    blind = _per_round_assessment("blind", (0.0,) * 5, seed=3)
    plot = plots.leakage_over_rounds({"lrt": leaky.rounds, "blind": blind.rounds}, SUBTITLE)
    d = plot.data
    assert plot.name == "leakage_over_rounds"
    assert d["attacks"] == ["lrt", "blind"]
    for a in (leaky, blind):
        np.testing.assert_array_equal(d["rounds"][a.name], [1, 2, 3, 4, 5])
        stats = a.result.per_round
        expected_auc = [roc_auc_score(a.truth, s) for s in stats]
        np.testing.assert_allclose(d["auc"][a.name], expected_auc, atol=1e-12)
        expected_tpr = [_tpr_at_1pct(s, a.truth) for s in stats]
        np.testing.assert_allclose(d["tpr_at_fpr_0.01"][a.name], expected_tpr, atol=1e-12)
    assert d["leakiest"]["lrt"] == (3, pytest.approx(d["auc"]["lrt"][2]))
    assert np.all(np.diff(d["auc"]["lrt"][:3]) > 0) and np.all(np.diff(d["auc"]["lrt"][2:]) < 0)
    assert np.all(np.abs(d["auc"]["blind"] - 0.5) < 0.08)  # no signal: chance every round
    auc_ax, tpr_ax = plot.figure.axes
    for ax, key, chance in ((auc_ax, "auc", 0.5), (tpr_ax, "tpr_at_fpr_0.01", 0.01)):
        lines = ax.get_lines()
        # per attack: its curve, then its star; then the chance line
        assert len(lines) == 2 * 2 + 1
        for i, name in enumerate(("lrt", "blind")):
            curve, star = lines[2 * i], lines[2 * i + 1]
            np.testing.assert_array_equal(curve.get_xdata(), [1, 2, 3, 4, 5])
            np.testing.assert_array_equal(curve.get_ydata(), d[key][name])
            assert star.get_marker() == "*" and star.get_color() == curve.get_color()
            at = d["leakiest"][name][0]
            assert list(star.get_xdata()) == [at]
            assert list(star.get_ydata()) == [d[key][name][at - 1]]
        assert lines[-1].get_linestyle() == "--"
        assert list(lines[-1].get_ydata()) == [chance, chance]
    (legend,) = plot.figure.legends  # one, below both panels
    assert [text.get_text() for text in legend.get_texts()] == [
        f"lrt (max AUC {d['auc']['lrt'][2]:.3f}, round 3)",
        f"blind (max AUC {d['leakiest']['blind'][1]:.3f}, round {d['leakiest']['blind'][0]})",
        "chance (AUC 0.5)",
        "chance (TPR = FPR = 0.01)",
        "leakiest round (max AUC)",
    ]
    assert auc_ax.get_xlabel() == tpr_ax.get_xlabel() == "FedAvg round attacked"


def test_leakage_over_rounds_gaps_and_validation() -> None:
    rounds = {2: {"auc": 0.7}, 1: {"auc": 0.6, "tpr_at_fpr_0.01": 0.05}}  # unsorted, no TPR
    plot = plots.leakage_over_rounds({"lrt": rounds}, SUBTITLE)
    np.testing.assert_array_equal(plot.data["rounds"]["lrt"], [1, 2])
    np.testing.assert_array_equal(plot.data["tpr_at_fpr_0.01"]["lrt"], [0.05, np.nan])
    assert plot.data["leakiest"] == {"lrt": (2, 0.7)}
    with pytest.raises(ValueError, match="at least one round"):
        plots.leakage_over_rounds({}, SUBTITLE)
    with pytest.raises(ValueError, match="at least one round"):
        plots.leakage_over_rounds({"lrt": {}}, SUBTITLE)
    with pytest.raises(ValueError, match=r"lrt: rounds \[2\] have no 'auc'"):
        plots.leakage_over_rounds({"lrt": {1: {"auc": 0.6}, 2: {"advantage": 0.1}}}, SUBTITLE)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from([0.5, 0.55, 0.6, 0.7]), min_size=1, max_size=8))
def test_the_leakiest_round_is_the_first_with_the_highest_auc(aucs: list[float]) -> None:
    plot = plots.leakage_over_rounds(
        {"a": {r: {"auc": v} for r, v in enumerate(aucs, start=1)}}, SUBTITLE
    )
    at, value = plot.data["leakiest"]["a"]
    assert value == max(aucs) and at == aucs.index(max(aucs)) + 1


def _arena() -> Arena:
    genotypes, labels, names = _cohort(n=40, p=8)
    rows = np.arange(40, dtype=np.int64)
    pool = Pool(rows, rows % 2 == 0, np.zeros(40, dtype=np.int64))
    server = FederationResult(initial_params={}, rounds=())
    return Arena(Cohort(genotypes, labels, tuple(names)), pool, server, 0, SGDLogistic())


def test_run_figures_draw_leakage_over_rounds_only_for_attacks_with_rounds() -> None:
    with_rounds = _per_round_assessment("lrt", SHIFTS)
    without = _per_round_assessment("mia", ())
    assert without.rounds == {}
    attacks = [ConfidenceMIA(), ConfidenceMIA()]  # stand-ins: run_figures reads names off results
    tasks = run_figures(_arena(), attacks, [without, with_rounds], SUBTITLE)
    over_rounds = [t for t in tasks if t.function == "leakage_over_rounds"]
    assert len(over_rounds) == 1
    assert over_rounds[0].args == ({"lrt": with_rounds.rounds}, SUBTITLE)
    assert over_rounds[0].draw().data["leakiest"]["lrt"][0] == 3
    names = {t.function for t in run_figures(_arena(), attacks[:1], [without], SUBTITLE)}
    assert "leakage_over_rounds" not in names and "roc_curves" in names


# --- every figure: PNG, title, labels, no pyplot ----------------------------------------------


def _builders() -> dict[str, Callable[[], Plot]]:
    genotypes, labels, names = _cohort()
    scores, truth = _pool()
    rounds = np.arange(1, 4)
    curves = {key: [0.5, 0.6, 0.7] for key in plots.TRAINING_KEYS}
    return {
        "gradient_norm_histogram": lambda: plots.gradient_norm_histogram(
            scores, truth, 0.4, SUBTITLE
        ),
        "snp_pca": lambda: plots.snp_pca(genotypes, labels, SUBTITLE, np.random.default_rng(0)),
        "top_snp_correlations": lambda: plots.top_snp_correlations(
            genotypes, labels, names, SUBTITLE
        ),
        "roc": lambda: plots.roc_curves({"mia": (scores, truth)}, {"mia": (0.0, 0.1)}, SUBTITLE),
        "threshold_curves_mia": lambda: plots.threshold_curves(
            "mia", scores, truth, True, 0.5, SUBTITLE
        ),
        "training_curves": lambda: plots.training_curves(rounds, curves, SUBTITLE),
        "client_auc": lambda: plots.client_auc_bars({"mia": {0: 0.6, 1: 0.4}}, SUBTITLE),
        "leakage_over_rounds": lambda: plots.leakage_over_rounds(
            {"lrt": _per_round_assessment("lrt", SHIFTS).rounds}, SUBTITLE
        ),
    }


@pytest.mark.parametrize("name", list(_builders()))
def test_every_figure_saves_a_titled_labelled_png(name: str, tmp_path: Path) -> None:
    plot = _builders()[name]()
    assert plot.name == name
    path = save_png(plot, tmp_path)
    assert path == tmp_path / f"{name}.png"
    content = path.read_bytes()
    assert content.startswith(PNG_MAGIC) and len(content) > 1000
    suptitle = plot.figure.get_suptitle()
    assert SUBTITLE in suptitle and suptitle.split("\n")[0].strip()
    assert plot.figure.axes
    for ax in plot.figure.axes:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip()


def test_plots_never_imports_pyplot() -> None:
    tree = ast.parse(inspect.getsource(plots))
    imported = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    imported += [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]
    assert imported and not [name for name in imported if "pyplot" in name]


def test_snp_pca_large_matrices_use_a_randomized_svd_that_matches_the_exact_one() -> None:
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 2, 700)
    freq = np.where(groups[:, None] == 1, 0.45, 0.25) * np.ones((1, 900))
    genotypes = rng.binomial(2, freq).astype(np.int8)  # 700 x 900: both dimensions above 500
    labels = rng.integers(0, 2, 700)
    plot = plots.snp_pca(genotypes, labels, SUBTITLE, np.random.default_rng(0))
    x = genotypes.astype(np.float64)
    x -= x.mean(axis=0)
    _, singular, _ = np.linalg.svd(x, full_matrices=False)
    exact = singular[:2] ** 2 / (singular**2).sum()
    ratio = plot.data["explained_variance_ratio"]
    assert ratio[0] == pytest.approx(exact[0], rel=1e-3)  # the structure's component: exact
    assert ratio[1] == pytest.approx(exact[1], rel=0.05)  # noise's: a near-flat spectrum
    # PC1 separates the two groups, as the exact decomposition does.
    pc1 = plot.data["scores"][:, 0]
    assert abs(np.corrcoef(pc1, groups[plot.data["rows"]])[0, 1]) > 0.95


def test_snp_pca_density_draws_no_individual_points_or_labels() -> None:
    rng = np.random.default_rng(4)
    genotypes = rng.integers(0, 3, (300, 40))
    labels = rng.integers(0, 2, 300)
    plot = plots.snp_pca(genotypes, labels, SUBTITLE, np.random.default_rng(0), density=True)
    ax = plot.figure.axes[0]
    assert ax.get_legend() is None
    assert not any(type(c).__name__ == "PathCollection" for c in ax.collections)  # no scatter
    assert any(type(c).__name__ == "PolyCollection" for c in ax.collections)  # the hexbin


# --- issue 12: readable figures ---------------------------------------------------------------


def test_histogram_draws_densities_so_equal_distributions_look_equal_at_4_to_1() -> None:
    values = np.random.default_rng(8).gamma(2.0, 0.1, size=60)
    norms = np.concatenate([values, np.tile(values, 4)])  # members: the same values, 4 times
    member = np.r_[np.zeros(60, dtype=bool), np.ones(240, dtype=bool)]
    plot = plots.gradient_norm_histogram(norms, member, 0.2, SUBTITLE, bins=12)
    d = plot.data
    edges = d["bin_edges"]
    for key, rows in (("member_density", member), ("non_member_density", ~member)):
        expected = np.histogram(norms[rows], edges, density=True)[0]
        np.testing.assert_allclose(d[key], expected, rtol=1e-12)
        assert float(np.sum(d[key] * np.diff(edges))) == pytest.approx(1.0)
    np.testing.assert_allclose(d["member_density"], d["non_member_density"], rtol=1e-12)
    np.testing.assert_array_equal(d["member_counts"], 4 * d["non_member_counts"])
    ax = plot.figure.axes[0]
    drawn = [np.asarray(a.get_data().values) for a in ax.patches]  # StepPatch: fill, outline
    np.testing.assert_allclose(drawn[0], d["non_member_density"])
    np.testing.assert_allclose(drawn[2], d["member_density"])
    assert "density" in ax.get_ylabel()
    legend = _legend_texts(ax)
    assert "members (n=240)" in legend and "non-members (n=60)" in legend
    # An empty class draws zeros, not NaN (numpy's density=True would divide by zero).
    empty = plots.gradient_norm_histogram(values, np.zeros(60, dtype=bool), 0.2, SUBTITLE)
    assert not empty.data["member_density"].any()


def _curve_lines(ax: Axes, names: list[str]) -> dict[str, Line2D]:
    return {
        name: next(line for line in ax.get_lines() if line.get_label().startswith(f"{name} ("))
        for name in names
    }


def test_roc_perfect_attack_is_marked_off_the_frame_and_coinciding_curves_say_so() -> None:
    scores, truth = _pool()
    perfect = truth.astype(np.float64)  # LIA-like: AUC 1.0
    curves = {"mia": (scores, truth), "gmia": (scores.copy(), truth), "lia": (perfect, truth)}
    plot = plots.roc_curves(curves, {}, SUBTITLE)
    d = plot.data
    assert d["curves"]["lia"]["auc"] == 1.0
    assert d["on_top"] == ["lia"]
    assert d["coincide"] == {"gmia": "mia"}
    ax = plot.figure.axes[0]
    assert ax.get_ylim()[1] == plots.ROC_Y_HEADROOM > 1.0  # TPR 1 is not the top frame
    lines = _curve_lines(ax, ["mia", "gmia", "lia"])
    assert lines["lia"].get_marker() not in (None, "None", "")
    assert lines["mia"].get_marker() in (None, "None", "")
    (markers,) = [
        line
        for line in ax.get_lines()
        if line.get_marker() == "v" and line.get_linestyle() == "None"
    ]
    assert markers.get_color() == lines["lia"].get_color() and not markers.get_clip_on()
    assert np.all(np.asarray(markers.get_ydata()) == 1.0) and len(markers.get_xdata()) == 9
    assert lines["gmia"].get_linestyle() == "--"  # the curve it equals shows between dashes
    legend = _legend_texts(ax)
    assert f"gmia (AUC {d['curves']['gmia']['auc']:.3f}, coincides with mia)" in legend
    assert not [text for text in legend if text.startswith("mia") and "coincides" in text]
    # The coinciding curve is still told apart: its own colour and line style differ.
    a, b = lines["mia"], lines["gmia"]
    assert (a.get_color(), a.get_linestyle()) != (b.get_color(), b.get_linestyle())
    chance = next(line for line in ax.get_lines() if line.get_label() == "chance")
    assert chance.get_zorder() > max(line.get_zorder() for line in lines.values())


def test_roc_with_twelve_attacks_has_twelve_colours_and_a_legend_outside() -> None:
    rng = np.random.default_rng(11)
    truth = rng.random(300) < 0.5
    names = [f"attack{i}" for i in range(12)]
    curves = {name: (rng.random(300) + 0.05 * i * truth, truth) for i, name in enumerate(names)}
    plot = plots.roc_curves(curves, {}, SUBTITLE)
    ax = plot.figure.axes[0]
    colours = {tuple(line.get_color()) for line in _curve_lines(ax, names).values()}
    assert len(colours) == 12
    legend = ax.get_legend()
    assert legend is not None and len(legend.get_texts()) == 13  # + chance
    plot.figure.canvas.draw()
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1  # right of the axes
    few = plots.roc_curves({n: curves[n] for n in names[:2]}, {}, SUBTITLE).figure
    few.canvas.draw()
    few_ax = few.axes[0]
    few_legend = few_ax.get_legend()
    assert few_legend is not None
    assert few_legend.get_window_extent().x1 <= few_ax.get_window_extent().x1  # inside


def test_series_styles_are_distinct_pairs() -> None:
    styles = [plots.series_style(i) for i in range(60)]
    assert len(set(styles)) == 60
    assert len({color for color, _ in styles[:20]}) == 20


def test_threshold_curves_trivial_f1_is_drawn_above_the_series() -> None:
    scores, truth = _pool()
    ax = plots.threshold_curves("mia", scores, truth, True, 0.5, SUBTITLE).figure.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    trivial = next(line for label, line in lines.items() if label.startswith("F1 of all"))
    series = [lines[k] for k in ("precision", "recall", "F1")]
    assert trivial.get_zorder() > max(line.get_zorder() for line in series)


def test_training_curves_have_chance_lines_above_and_an_accuracy_axis_to_one() -> None:
    rounds = np.arange(1, 5)
    metrics = {
        "fed/train_loss": [0.69, 0.68, 0.68, 0.67],
        "fed/test_loss": [0.69, 0.69, 0.68, 0.68],
        "fed/train_accuracy": [0.55, 0.56, 0.57, 0.57],
        "fed/test_accuracy": [0.545, 0.55, 0.56, np.nan],
    }
    plot = plots.training_curves(rounds, metrics, SUBTITLE, prevalence=0.3)
    d = plot.data
    assert d["chance_accuracy"] == pytest.approx(0.7)
    q = np.full(10, 0.3)  # always predicting the prevalence: log loss H(0.3)
    assert d["chance_loss"] == pytest.approx(log_loss([1, 1, 1] + [0] * 7, q))
    assert d["accuracy_ylim"] == pytest.approx((0.545 - 0.02, 1.0))  # an accuracy below chance
    loss_ax, acc_ax = plot.figure.axes
    assert acc_ax.get_ylim() == pytest.approx((0.525, 1.0))
    for ax, chance in ((loss_ax, d["chance_loss"]), (acc_ax, 0.7)):
        *series, line = ax.get_lines()
        assert list(line.get_ydata()) == pytest.approx([chance, chance])
        assert line.get_linestyle() == "--"
        assert line.get_zorder() > max(s.get_zorder() for s in series)
        assert any(text.startswith("chance") for text in _legend_texts(ax))
    balanced = plots.training_curves(rounds, metrics, SUBTITLE).data
    assert balanced["chance_accuracy"] == 0.5 and balanced["accuracy_ylim"][0] == 0.48
    with pytest.raises(ValueError, match="prevalence"):
        plots.training_curves(rounds, metrics, SUBTITLE, prevalence=1.5)


def test_top_correlations_hatch_the_causal_snps_with_a_legend_entry() -> None:
    genotypes, labels, names = _cohort()
    causal = np.zeros(20, dtype=bool)
    causal[[2, 17]] = True  # rs102 (strongly correlated) and rs117 (noise)
    plot = plots.top_snp_correlations(genotypes, labels, names, SUBTITLE, k=10, causal=causal)
    shown = plot.data["causal"]
    np.testing.assert_array_equal(shown, [n in ("rs102", "rs117") for n in plot.data["names"]])
    assert shown.sum() >= 1
    ax = plot.figure.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    by_height = sorted(bars, key=lambda bar: -bar.get_y())  # top bar first, as names
    assert [bool(bar.get_hatch()) for bar in by_height] == list(shown)
    legend = _legend_texts(ax)
    assert f"causal SNP ({int(shown.sum())} of 2 shown)" in legend
    unknown = plots.top_snp_correlations(genotypes, labels, names, SUBTITLE)
    assert unknown.data["causal"] is None
    assert not any(p.get_hatch() for p in unknown.figure.axes[0].patches)
    with pytest.raises(ValueError, match="causal"):
        plots.top_snp_correlations(genotypes, labels, names, SUBTITLE, causal=causal[:5])


def test_run_figures_give_cohort_figures_a_cohort_subtitle_and_the_causal_snps() -> None:
    arena = _arena()
    causal = np.zeros(8, dtype=bool)
    causal[2] = True
    cohort = arena.cohort
    known = Cohort(cohort.genotypes, cohort.labels, cohort.snp_names, {"causal": causal})
    arena = Arena(known, arena.pool, arena.server, 0, SGDLogistic())
    tasks = {t.function: t for t in run_figures(arena, [], [], SUBTITLE)}
    top, pca = tasks["top_snp_correlations"], tasks["snp_pca"]
    assert top.args[3] == pca.args[2] == "40 individuals x 8 SNPs, 1 causal"
    np.testing.assert_array_equal(top.kwargs["causal"], causal)
    assert top.draw().data["causal"] is not None
    plain = {t.function: t for t in run_figures(_arena(), [], [], SUBTITLE)}
    assert plain["top_snp_correlations"].kwargs == {}
    assert plain["snp_pca"].args[2] == "40 individuals x 8 SNPs"

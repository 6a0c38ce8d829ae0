"""Per-run figures: plain functions from numpy arrays to a `fedgen.figures.Plot`.

Every function returns a ``Plot`` whose ``data`` holds exactly the numbers drawn, so tests check
numbers rather than pixels. Figures come from `fedgen.figures.new_figure` (Agg canvas, no pyplot
state); the ``subtitle`` argument (the experiment's key settings, passed by the caller) is shown
under the title. Statistics are always computed on all rows; only scatter plots subsample points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullLocator
from numpy.typing import ArrayLike, NDArray

from fedgen.evaluation.metrics import auc, roc, trivial_metrics
from fedgen.figures.base import PCA_MAX_CELLS, Plot, new_figure

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]

#: Keys of `training_curves`' ``metrics``: pooled loss and accuracy of the global model.
TRAINING_KEYS = ("fed/train_loss", "fed/test_loss", "fed/train_accuracy", "fed/test_accuracy")
GRADIENT_NORM_LABEL = "scaled gradient norm ‖g‖ / √(4p+1)"
EXACT_PCA_MAX = 500  # PCA exactly (a Gram matrix's eigendecomposition) up to this many SNPs/rows
_MEMBER, _NON_MEMBER = "C3", "C0"
#: Trivial baselines and chance lines are drawn above the series (lines default to zorder 2).
BASELINE_ZORDER = 3.0
#: Twenty distinct colours (tab20's dark shades, then its light ones): one per ROC curve.
SERIES_COLORS = tuple(colormaps["tab20"](i) for i in (*range(0, 20, 2), *range(1, 20, 2)))
SERIES_LINESTYLES = ("-", "--", "-.")
#: ROC legends move outside the axes above this many curves.
ROC_LEGEND_INSIDE_MAX = 4
#: The ROC's y-axis runs to this (above TPR 1), so that a perfect attack's curve is not the frame.
ROC_Y_HEADROOM = 1.25


def series_style(i: int) -> tuple[tuple[float, float, float, float], str]:
    """The RGBA colour and line style of the ``i``-th curve (0-based).

    Distinct colours for the first 20 curves; dark and light shades of a hue also differ in
    line style, and beyond 20 the (colour, style) pair stays distinct up to 60 curves.
    """
    color = SERIES_COLORS[i % len(SERIES_COLORS)]
    return color, SERIES_LINESTYLES[(i // 10) % len(SERIES_LINESTYLES)]


def _floats(x: ArrayLike, name: str) -> Floats:
    """``x`` as a non-empty 1-D float64 array without NaN (else ValueError)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    return a


def _truth(x: ArrayLike, name: str, n: int) -> Bools:
    """``x`` as a bool array of shape (n,); 0/1 integers are accepted, other values raise."""
    a = np.asarray(x)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    if a.dtype != np.bool_ and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must be boolean (or 0/1)")
    return a.astype(np.bool_)


def _matrix(genotypes: ArrayLike, labels: ArrayLike) -> tuple[Floats, NDArray[Any]]:
    """Genotypes as float64 (n, p) and labels (n,); ValueError on mismatched shapes or NaN."""
    x = np.asarray(genotypes, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or y.shape != (x.shape[0],):
        raise ValueError(f"need genotypes (n, p) and labels (n,), got {x.shape} and {y.shape}")
    if np.isnan(x).any():
        raise ValueError("genotypes contain NaN")
    return x, y


def _density(counts: NDArray[np.int64], edges: Floats) -> Floats:
    """Counts (bins,) as a density over ``edges`` (bins + 1,): integrates to 1; zeros if empty."""
    total = float(np.sum(counts))
    if total == 0:
        return np.zeros(counts.size)
    density: Floats = counts / (total * np.diff(edges))
    return density


def gradient_norm_histogram(
    norms: ArrayLike,
    is_member: ArrayLike,
    threshold: float,
    subtitle: str,
    bins: int = 50,
) -> Plot:
    """Overlaid histograms of the members' and non-members' scaled gradient norms.

    Parameters
    ----------
    norms : array of float, shape (n,)
        Per-target gradient norm, scaled by √(4p+1) (p SNPs).
    is_member : array of bool, shape (n,)
        True for members (training rows).
    threshold : float
        The attack's threshold (members are called where norm <= threshold); a vertical line.
    subtitle : str
        The experiment's key settings, shown under the title.
    bins : int
        Number of bins; both classes share the same edges, spanning all ``norms``.

    Returns
    -------
    Plot
        Name ``gradient_norm_histogram``; data ``bin_edges`` (bins + 1,), ``member_counts`` and
        ``non_member_counts`` (bins,) raw counts (summing to the class sizes),
        ``member_density`` and ``non_member_density`` (bins,) the drawn densities (each
        integrates to 1 over the edges; zeros for an empty class), ``threshold``. Densities,
        not counts, are drawn, so classes of unequal size (members 4:1) with the same
        distribution look the same; the class sizes are in the legend.
    """
    x = _floats(norms, "norms")
    member = _truth(is_member, "is_member", x.size)
    if not np.isfinite(x).all():
        raise ValueError("norms must be finite")
    edges = np.histogram_bin_edges(x, bins=bins)
    member_counts = np.histogram(x[member], bins=edges)[0]
    non_member_counts = np.histogram(x[~member], bins=edges)[0]
    member_density, non_member_density = (
        _density(member_counts, edges),
        _density(non_member_counts, edges),
    )

    fig = new_figure("Gradient norms: members vs non-members", subtitle)
    ax = fig.add_subplot()
    for density, color, label in (
        (non_member_density, _NON_MEMBER, f"non-members (n={int(np.sum(~member))})"),
        (member_density, _MEMBER, f"members (n={int(np.sum(member))})"),
    ):
        ax.stairs(density, edges, fill=True, alpha=0.35, color=color)
        ax.stairs(density, edges, color=color, linewidth=1.2, label=label)
    ax.axvline(
        threshold,
        color="black",
        linestyle="--",
        linewidth=1.2,
        label=f"threshold t={threshold:.4g}",
    )
    ax.set_xlabel(GRADIENT_NORM_LABEL)
    ax.set_ylabel("density (fraction of the class per unit norm)")
    ax.legend(fontsize=8)
    data = {
        "bin_edges": edges,
        "member_counts": member_counts,
        "non_member_counts": non_member_counts,
        "member_density": member_density,
        "non_member_density": non_member_density,
        "threshold": float(threshold),
    }
    return Plot("gradient_norm_histogram", fig, data)


def _principal_axes(centred: Floats, rng: np.random.Generator) -> tuple[Floats, Floats]:
    """First two principal axes (2, p) and their explained variance ratios (2,).

    ``centred`` (n, p) has zero column means. When p <= 500 (or n <= 500), exactly: the
    eigendecomposition of the small Gram matrix (XᵀX, or XXᵀ mapped back), the same numbers as
    ``np.linalg.svd`` and much faster. Otherwise a randomized 2-component SVD (Halko et al.
    2011, scikit-learn's ``randomized_svd`` with its default power iterations, seeded from
    ``rng``). Each axis's sign makes its largest-magnitude loading positive (as scikit-learn's
    ``svd_flip``), so results are deterministic.
    """
    n, p = centred.shape
    if p <= EXACT_PCA_MAX:
        eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)  # ascending
        variance = np.maximum(eigenvalues[::-1][:2], 0.0)
        axes = eigenvectors[:, ::-1][:, :2].T
    elif n <= EXACT_PCA_MAX:
        eigenvalues, eigenvectors = np.linalg.eigh(centred @ centred.T)
        variance = np.maximum(eigenvalues[::-1][:2], 0.0)
        left = eigenvectors[:, ::-1][:, :2]
        axes = (left.T @ centred) / np.sqrt(np.where(variance > 0, variance, 1.0))[:, None]
    else:
        from sklearn.utils.extmath import randomized_svd  # only here: workers start faster

        seed = int(rng.integers(2**31 - 1))
        _, singular, vt = randomized_svd(centred, 2, n_iter=7, random_state=seed)
        variance, axes = singular**2, vt
    top = np.argmax(np.abs(axes), axis=1)
    axes = axes * np.sign(axes[np.arange(2), top])[:, None]
    total = float(np.einsum("ij,ij->", centred, centred))
    ratio = variance / total if total > 0 else np.zeros(2)
    return axes, ratio


def snp_pca(
    genotypes: ArrayLike,
    labels: ArrayLike,
    subtitle: str,
    rng: np.random.Generator,
    max_points: int = 4000,
    density: bool = False,
) -> Plot:
    """The individuals on the first two principal components: dots by label, or a density.

    Parameters
    ----------
    genotypes : array of int, shape (n, p)
        Minor-allele counts. The components are those of the column-centred matrix of all n
        rows (see `_principal_axes`), so min(n, p) must be at least 2. Above
        ``PCA_MAX_CELLS`` cells they are computed on a random subset of rows (SNPs stay
        whole), so the figure never holds a float copy of a biobank-sized cohort.
    labels : array, shape (n,)
        Phenotype per individual (0/1); one colour per distinct value.
    subtitle : str
        The experiment's key settings, shown under the title.
    rng : numpy.random.Generator
        Picks the rows used and plotted when there are more than the limits, and seeds the
        randomized SVD.
    max_points : int
        Most rows drawn.
    density : bool
        Draw a hexagonal density of all plotted individuals, without labels, instead of one
        dot per individual coloured by phenotype: for a real cohort (a file), whose individual
        points should not end up in a shared figure.

    Returns
    -------
    Plot
        Name ``snp_pca``; data ``explained_variance_ratio`` (2,), ``scores`` (n_plotted, 2),
        ``labels`` (n_plotted,), ``rows`` (n_plotted,) ascending row indices of the points.
        Each component's sign makes its largest-magnitude loading positive (as scikit-learn).
    """
    g = np.asarray(genotypes)
    y = np.asarray(labels)
    if g.ndim != 2 or g.shape[0] == 0 or g.shape[1] == 0 or y.shape != (g.shape[0],):
        raise ValueError(f"need genotypes (n, p) and labels (n,), got {g.shape} and {y.shape}")
    n, p = g.shape
    if min(n, p) < 2:
        raise ValueError(f"PCA to 2 components needs at least 2 rows and 2 SNPs, got {g.shape}")
    if max_points < 1:
        raise ValueError(f"max_points must be positive, got {max_points}")
    fit_rows = np.arange(n)
    if n * p > PCA_MAX_CELLS:
        fit_rows = np.sort(rng.choice(n, max(2, PCA_MAX_CELLS // p), replace=False))
    x, _ = _matrix(g[fit_rows], y[fit_rows])
    mean = x.mean(axis=0)
    x -= mean
    components, ratio = _principal_axes(x, rng)
    rows = np.arange(n) if n <= max_points else np.sort(rng.choice(n, max_points, replace=False))
    scores = (np.asarray(g[rows], np.float64) - mean) @ components.T
    shown = y[rows]

    title = "Genotype PCA, density" if density else "Genotype PCA, coloured by label"
    fig = new_figure(title, subtitle)
    ax = fig.add_subplot()
    note = f"{rows.size} of {n} individuals shown" if rows.size < n else f"{n} individuals"
    if density:
        ax.hexbin(scores[:, 0], scores[:, 1], gridsize=30, mincnt=1, cmap="Blues")
        ax.set_title(note, fontsize=8)
    else:
        for i, value in enumerate(np.unique(shown)):
            at = shown == value
            ax.scatter(
                scores[at, 0],
                scores[at, 1],
                s=5,
                alpha=0.5,
                linewidths=0,
                color=f"C{i}",
                label=f"label {value} (n={int(at.sum())})",
            )
        ax.legend(title=note, fontsize=8, title_fontsize=8, markerscale=3)
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% variance)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}% variance)")
    data = {"explained_variance_ratio": ratio, "scores": scores, "labels": shown, "rows": rows}
    return Plot("snp_pca", fig, data)


def snp_label_correlations(genotypes: ArrayLike, labels: ArrayLike) -> Floats:
    """Pearson r of each SNP with the label, vectorised; float64 (p,) in [-1, 1].

    A constant SNP (or a constant label) has r = 0 instead of NaN.
    """
    x, y = _matrix(genotypes, labels)
    xc = x - x.mean(axis=0)
    yc = y.astype(np.float64) - y.astype(np.float64).mean()
    den = np.sqrt(np.einsum("ij,ij->j", xc, xc) * float(yc @ yc))
    r: Floats = np.zeros(x.shape[1])
    np.divide(xc.T @ yc, den, out=r, where=den > 0)
    np.clip(r, -1.0, 1.0, out=r)
    return r


def top_snp_correlations(
    genotypes: ArrayLike,
    labels: ArrayLike,
    snp_names: Sequence[str],
    subtitle: str,
    k: int = 10,
    causal: ArrayLike | None = None,
) -> Plot:
    """Signed horizontal bars of the ``k`` SNPs most correlated with the label, largest on top.

    Parameters
    ----------
    genotypes : array of int, shape (n, p)
    labels : array of 0/1, shape (n,)
    snp_names : sequence of str, length p
    subtitle : str
        The experiment's key settings, shown under the title.
    k : int
        Number of SNPs shown (at most p).
    causal : array of bool, shape (p,), optional
        Which SNPs carry an effect on the phenotype, where the cohort knows it (a simulated
        cohort's ``metadata["causal"]``): their bars are hatched, with a legend entry.

    Returns
    -------
    Plot
        Name ``top_snp_correlations``; data ``names`` (list of min(k, p) str) and ``r``
        (min(k, p),) signed Pearson r, in descending |r| order (ties: lower SNP index first);
        ``causal`` (min(k, p),) bool of the bars shown, or None when not known.
    """
    r_all = snp_label_correlations(genotypes, labels)
    if len(snp_names) != r_all.size:
        raise ValueError(f"need {r_all.size} snp_names, got {len(snp_names)}")
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    order = np.argsort(-np.abs(r_all), kind="stable")[:k]
    names, r = [str(snp_names[i]) for i in order], r_all[order]
    causal_all = None if causal is None else _truth(causal, "causal", r_all.size)
    shown_causal = None if causal_all is None else causal_all[order]

    fig = new_figure(f"Top {r.size} SNPs by |Pearson r| with the label", subtitle)
    ax = fig.add_subplot()
    y = np.arange(r.size)[::-1]
    bars = ax.barh(y, r, color=[_MEMBER if v > 0 else _NON_MEMBER for v in r], height=0.7)
    if shown_causal is not None:
        for bar, is_causal in zip(bars, shown_causal, strict=True):
            if is_causal:
                bar.set_hatch("///")
                bar.set_edgecolor("black")
    ax.bar_label(bars, labels=[f"{v:+.3f}" for v in r], fontsize=7, padding=2)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(y, names, fontsize=8)
    reach = max(float(np.max(np.abs(r))) * 1.3, 0.05)
    ax.set_xlim(-reach, reach)
    ax.set_xlabel("Pearson r between minor-allele count and label (signed)")
    ax.set_ylabel("SNP")
    handles = [Patch(color=_MEMBER, label="r > 0"), Patch(color=_NON_MEMBER, label="r ≤ 0")]
    if causal_all is not None and shown_causal is not None:
        n_causal = int(np.count_nonzero(causal_all))
        label = f"causal SNP ({int(shown_causal.sum())} of {n_causal} shown)"
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label=label))
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    data = {"names": names, "r": r, "causal": shown_causal}
    return Plot("top_snp_correlations", fig, data)


def roc_curves(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    operating_points: Mapping[str, tuple[float, float]],
    subtitle: str,
) -> Plot:
    """ROC curves of several attacks on log-log axes (Carlini et al. 2022), with their AUC.

    Parameters
    ----------
    curves : mapping of str to (scores, truth)
        Per attack: ``scores`` float (n,) oriented so that higher means more likely positive,
        ``truth`` bool (n,) holding both classes (else ValueError).
    operating_points : mapping of str to (float, float)
        (FPR, TPR) at each attack's chosen threshold; keys must be attacks of ``curves``. A
        zero rate is drawn at the axis floor.
    subtitle : str
        The experiment's key settings, shown under the title.

    Returns
    -------
    Plot
        Name ``roc``; data ``curves`` {attack: {"fpr", "tpr": (g + 1,) from `metrics.roc`,
        "auc": float from `metrics.auc`}}, ``operating_points`` {attack: (fpr, tpr)},
        ``x_floor`` = 1 / most non-members and ``y_floor`` = 1 / most members of any attack
        (the x-axis runs from its floor to 1, the y-axis to `ROC_Y_HEADROOM`), ``coincide``
        {attack: the earlier attack whose (fpr, tpr) it equals} (said in its legend label),
        ``on_top`` [attacks whose TPR reaches 1 at FPR <= 0.01, drawn with markers]. Curves
        have distinct colours (`series_style`); above `ROC_LEGEND_INSIDE_MAX` the legend
        goes outside the axes.
    """
    if not curves:
        raise ValueError("roc_curves needs at least one attack's curve")
    unknown = sorted(set(operating_points) - set(curves))
    if unknown:
        raise ValueError(f"operating points for attacks without a curve: {unknown}")
    drawn: dict[str, dict[str, Any]] = {}
    most_neg, most_pos = 1, 1
    for attack, (scores, truth) in curves.items():
        fpr, tpr = roc(scores, truth)
        drawn[attack] = {"fpr": fpr, "tpr": tpr, "auc": auc(scores, truth)}
        t = np.asarray(truth).astype(np.bool_)
        most_neg = max(most_neg, int(np.count_nonzero(~t)))
        most_pos = max(most_pos, int(np.count_nonzero(t)))
    x_floor, y_floor = 1.0 / most_neg, 1.0 / most_pos

    # Identical curves (two attacks computing the same statistic) would hide each other: the
    # later one says so in its label. A curve at TPR 1 over most of the FPR range (AUC near 1)
    # runs along the top frame: the y-axis gets headroom and such curves get markers.
    coincide: dict[str, str] = {}
    for i, (attack, c) in enumerate(drawn.items()):
        for earlier, e in list(drawn.items())[:i]:
            same = np.array_equal(c["fpr"], e["fpr"]) and np.array_equal(c["tpr"], e["tpr"])
            if same:
                coincide[attack] = coincide.get(earlier, earlier)
                break
    on_top = [attack for attack, c in drawn.items() if c["fpr"][np.argmax(c["tpr"] >= 1.0)] <= 0.01]
    y_top = ROC_Y_HEADROOM

    many = len(drawn) > ROC_LEGEND_INSIDE_MAX
    fig = new_figure("ROC curves (log-log)", subtitle, size=(8.6, 4.6) if many else (6.4, 4.4))
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    low = min(x_floor, y_floor)
    ax.plot(
        [low, 1.0],
        [low, 1.0],
        color="grey",
        linestyle=":",
        linewidth=1,
        zorder=BASELINE_ZORDER,
        label="chance",
    )
    for i, (attack, c) in enumerate(drawn.items()):
        color, linestyle = series_style(i)
        if attack in coincide:  # dashed over the curve it equals, which shows between dashes
            linestyle = "--"
        note = f", coincides with {coincide[attack]}" if attack in coincide else ""
        label = f"{attack} (AUC {c['auc']:.3f}{note})"
        ax.plot(
            c["fpr"],
            c["tpr"],
            color=color,
            linestyle=linestyle,
            linewidth=1.4,
            marker="v" if attack in on_top else None,
            markersize=5,
            markevery=[],  # the marker shows in the legend; the markers themselves follow
            label=label,
        )
        if attack in on_top:  # markers evenly spaced on the log axis, on the curve
            at = np.geomspace(x_floor, 1.0, 9)
            reached = np.maximum.accumulate(c["tpr"])[np.searchsorted(c["fpr"], at, "right") - 1]
            ax.plot(
                at,
                np.maximum(reached, y_floor),
                marker="v",
                markersize=5,
                linestyle="",
                color=color,
                clip_on=False,
            )
        if attack in operating_points:
            op_fpr, op_tpr = operating_points[attack]
            ax.plot(
                [max(op_fpr, x_floor)],
                [max(op_tpr, y_floor)],
                marker="o",
                markersize=7,
                markeredgecolor="black",
                color=color,
                clip_on=False,
            )
    ax.set_xlim(x_floor, 1.0)
    ax.set_ylim(y_floor, y_top)
    for axis in (ax.xaxis, ax.yaxis):  # plain decade labels, no minor ticks: 2.5x faster to save
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_locator(NullLocator())
    ax.grid(alpha=0.3)
    ax.set_xlabel("false positive rate (log)")
    ax.set_ylabel("true positive rate (log)")
    handles, _ = ax.get_legend_handles_labels()
    if operating_points:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                linestyle="",
                color="white",
                markeredgecolor="black",
                label="chosen threshold",
            )
        )
    if many:
        ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(handles=handles, fontsize=8, loc="lower right")
    data = {
        "curves": drawn,
        "operating_points": {a: (float(f), float(t)) for a, (f, t) in operating_points.items()},
        "x_floor": x_floor,
        "y_floor": y_floor,
        "coincide": coincide,
        "on_top": on_top,
    }
    return Plot("roc", fig, data)


def threshold_sweep(
    scores: ArrayLike, truth: ArrayLike, higher_is_positive: bool, thresholds: ArrayLike
) -> tuple[Floats, Floats, Floats]:
    """Precision, recall and F1 at each threshold, vectorised (one sort, one searchsorted).

    Parameters
    ----------
    scores : array of float, shape (n,)
    truth : array of bool, shape (n,)
    higher_is_positive : bool
        Positive where score >= t if True, where score <= t if False.
    thresholds : array of float, shape (m,)

    Returns
    -------
    precision, recall, f1 : ndarray of float64, shape (m,)
        As `metrics.threshold_metrics` on each threshold's calls (0.0 where undefined).
    """
    s = _floats(scores, "scores")
    t = _truth(truth, "truth", s.size)
    grid = _floats(thresholds, "thresholds")
    order = np.argsort(s, kind="stable")
    ranked = s[order]
    positives_before = np.concatenate([[0], np.cumsum(t[order])])  # members among i lowest
    n_pos = int(positives_before[-1])
    if higher_is_positive:
        cut = np.searchsorted(ranked, grid, side="left")  # scores below t are negative
        called, tp = s.size - cut, n_pos - positives_before[cut]
    else:
        cut = np.searchsorted(ranked, grid, side="right")  # scores up to t are positive
        called, tp = cut, positives_before[cut]
    zeros = np.zeros(grid.size)
    precision = np.divide(tp, called, out=zeros.copy(), where=called > 0)
    recall = tp / n_pos if n_pos else zeros.copy()
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=zeros.copy(), where=both > 0)
    return precision, recall, f1


def threshold_curves(
    name: str,
    scores: ArrayLike,
    truth: ArrayLike,
    higher_is_positive: bool,
    threshold: float,
    subtitle: str,
    grid: ArrayLike | None = None,
) -> Plot:
    """Precision, recall and F1 of an attack as functions of its threshold.

    Parameters
    ----------
    name : str
        The attack's name (in the title and the plot name).
    scores : array of float, shape (n,)
        The attack's statistic per target.
    truth : array of bool, shape (n,)
    higher_is_positive : bool
        Positive where score >= t if True, where score <= t if False.
    threshold : float
        The chosen threshold, drawn as a vertical line.
    subtitle : str
        The experiment's key settings, shown under the title.
    grid : array of float, shape (m,), optional
        Thresholds evaluated; default ``np.linspace(0, 1, 201)``.

    Returns
    -------
    Plot
        Name ``threshold_curves_<name>``; data ``thresholds`` (m,), ``precision``, ``recall``,
        ``f1`` (m,) (see `threshold_sweep`), ``trivial_f1`` (F1 of calling everyone positive,
        dashed line) and ``threshold``.
    """
    thresholds = _floats(np.linspace(0.0, 1.0, 201) if grid is None else grid, "grid")
    precision, recall, f1 = threshold_sweep(scores, truth, higher_is_positive, thresholds)
    trivial_f1 = trivial_metrics(np.asarray(truth).astype(np.bool_))["trivial_f1"]

    fig = new_figure(f"{name}: precision, recall and F1 against the threshold", subtitle)
    ax = fig.add_subplot()
    ax.plot(thresholds, precision, color="C0", label="precision")
    ax.plot(thresholds, recall, color="C1", label="recall")
    ax.plot(thresholds, f1, color="C2", linewidth=2, label="F1")
    ax.axhline(
        trivial_f1,
        color="grey",
        linestyle="--",
        zorder=BASELINE_ZORDER,
        label=f"F1 of all-positive ({trivial_f1:.3f})",
    )
    ax.axvline(threshold, color="black", linestyle=":", label=f"chosen t={threshold:.4g}")
    rule = "≥" if higher_is_positive else "≤"
    ax.set_xlabel(f"threshold t on the {name} score (positive if score {rule} t)")
    ax.set_ylabel("metric value (fraction)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    data = {
        "thresholds": thresholds,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "trivial_f1": float(trivial_f1),
        "threshold": float(threshold),
    }
    return Plot(f"threshold_curves_{name}", fig, data)


def training_curves(
    rounds: ArrayLike,
    metrics: Mapping[str, Sequence[float]],
    subtitle: str,
    prevalence: float = 0.5,
) -> Plot:
    """Pooled loss and accuracy of the global model over the FedAvg rounds, in two panels.

    Each panel has the chance level of a model that ignores the genotypes (dashed, above the
    curves): accuracy max(q, 1 - q) of always calling the majority label, and log loss
    H(q) = -q ln q - (1 - q) ln(1 - q) of always predicting the prevalence q. The accuracy
    axis runs from the lower of chance and the lowest accuracy (less 0.02) to 1, so that a
    model barely above chance does not look like a steep climb.

    Parameters
    ----------
    rounds : array of int, shape (R,)
    metrics : mapping of str to sequence of float
        Must hold `TRAINING_KEYS` (``fed/train_loss``, ``fed/test_loss``, ``fed/train_accuracy``,
        ``fed/test_accuracy``), each of length R (NaN leaves a gap); other keys are ignored.
    subtitle : str
        The experiment's key settings, shown under the title.
    prevalence : float
        Share of label 1 among the individuals, in [0, 1].

    Returns
    -------
    Plot
        Name ``training_curves``; data ``rounds`` (R,) and each of `TRAINING_KEYS` (R,)
        float64, ``chance_accuracy`` and ``chance_loss`` (floats), ``accuracy_ylim`` (lo, 1.0).
    """
    x = _floats(rounds, "rounds")
    missing = [key for key in TRAINING_KEYS if key not in metrics]
    if missing:
        raise ValueError(f"training_curves needs metrics {missing}")
    series = {key: np.asarray(metrics[key], dtype=np.float64) for key in TRAINING_KEYS}
    wrong = {key: v.shape for key, v in series.items() if v.shape != x.shape}
    if wrong:
        raise ValueError(f"metrics must have the shape of rounds {x.shape}, got {wrong}")
    if not 0.0 <= prevalence <= 1.0:
        raise ValueError(f"prevalence must be in [0, 1], got {prevalence}")
    q = float(prevalence)
    chance_accuracy = max(q, 1.0 - q)
    chance_loss = -sum(v * np.log(v) for v in (q, 1.0 - q) if v > 0)
    accuracies = np.concatenate([series["fed/train_accuracy"], series["fed/test_accuracy"]])
    finite = accuracies[np.isfinite(accuracies)]
    lowest = min(chance_accuracy, float(finite.min())) if finite.size else chance_accuracy
    accuracy_ylim = (max(0.0, lowest - 0.02), 1.0)

    fig = new_figure("Training curves of the global model (pooled)", subtitle, size=(9.0, 4.0))
    loss_ax, acc_ax = fig.subplots(1, 2)
    marker = "o" if x.size <= 30 else None
    for ax, kind, ylabel, chance, chance_label in (
        (
            loss_ax,
            "loss",
            "log loss (cross-entropy, nats)",
            chance_loss,
            f"chance: predict prevalence ({chance_loss:.3f})",
        ),
        (
            acc_ax,
            "accuracy",
            "accuracy (fraction correct)",
            chance_accuracy,
            f"chance: majority label ({chance_accuracy:.3f})",
        ),
    ):
        for split, color in (("train", "C0"), ("test", "C1")):
            y = series[f"fed/{split}_{kind}"]
            ax.plot(x, y, color=color, marker=marker, markersize=3, label=f"{split} rows")
        ax.axhline(
            chance,
            color="grey",
            linestyle="--",
            linewidth=1.2,
            zorder=BASELINE_ZORDER,
            label=chance_label,
        )
        ax.set_xlabel("FedAvg round")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    acc_ax.set_ylim(*accuracy_ylim)
    data = {
        "rounds": x,
        **series,
        "chance_accuracy": chance_accuracy,
        "chance_loss": float(chance_loss),
        "accuracy_ylim": accuracy_ylim,
    }
    return Plot("training_curves", fig, data)


def client_auc_bars(per_client: Mapping[str, Mapping[int, float]], subtitle: str) -> Plot:
    """Grouped bars of each attack's AUC on each client's pool, with the chance level.

    Parameters
    ----------
    per_client : mapping of str to (mapping of int to float)
        Attack -> client (partition id) -> ROC AUC.
    subtitle : str
        The experiment's key settings, shown under the title.

    Returns
    -------
    Plot
        Name ``client_auc``; data ``attacks`` (list), ``clients`` (sorted list of int, all
        clients of any attack) and ``auc`` (n_attacks, n_clients), NaN where missing (no bar,
        "n/a" at its foot).
    """
    attacks = list(per_client)
    clients = sorted({int(c) for by_client in per_client.values() for c in by_client})
    values = np.full((len(attacks), len(clients)), np.nan)
    for i, attack in enumerate(attacks):
        for j, client in enumerate(clients):
            if client in per_client[attack]:
                values[i, j] = float(per_client[attack][client])

    fig = new_figure("Attack AUC per client", subtitle)
    ax = fig.add_subplot()
    x = np.arange(len(clients), dtype=np.float64)
    width = 0.8 / max(len(attacks), 1)
    for i, attack in enumerate(attacks):
        shown = ~np.isnan(values[i])
        offset = (i - (len(attacks) - 1) / 2) * width
        ax.bar(x[shown] + offset, values[i, shown], width=width, color=f"C{i}", label=attack)
        for position in x[~shown] + offset:
            ax.text(position, 0.01, "n/a", ha="center", va="bottom", fontsize=7, color="grey")
    ax.axhline(
        0.5, color="black", linestyle="--", linewidth=1, zorder=BASELINE_ZORDER, label="chance"
    )
    ax.set_xticks(x, [str(c) for c in clients])
    if clients:
        ax.set_xlim(-0.5, len(clients) - 0.5)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("client (partition id)")
    ax.set_ylabel("ROC AUC on the client's pool")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return Plot("client_auc", fig, {"attacks": attacks, "clients": clients, "auc": values})


#: `leakage_over_rounds`' panels: the per-round metric, axis label, chance level and its label.
ROUND_PANELS = (
    ("auc", "ROC AUC of the round's statistic", 0.5, "chance (AUC 0.5)"),
    ("tpr_at_fpr_0.01", "TPR at 1% FPR", 0.01, "chance (TPR = FPR = 0.01)"),
)


def leakage_over_rounds(
    per_round: Mapping[str, Mapping[int, Mapping[str, float]]], subtitle: str
) -> Plot:
    """AUC (left) and TPR at 1% FPR (right) of attacks on each round's record, against round.

    One line per attack, the chance levels (AUC 0.5; TPR = FPR = 0.01) dashed, and each
    attack's leakiest round (highest AUC, the earliest on ties) starred in both panels: a
    server that wants one record of a target can stop training there.

    Parameters
    ----------
    per_round : mapping of str to (mapping of int to (mapping of str to float))
        Attack -> round (1-based) -> its metrics, as ``Assessment.rounds``: ``auc`` (required)
        and ``tpr_at_fpr_0.01`` (missing or NaN where the pool is too small: a gap).
    subtitle : str
        The experiment's key settings, shown under the title.

    Returns
    -------
    Plot
        Name ``leakage_over_rounds``; data ``attacks`` (list), and per attack ``rounds`` {attack:
        (R,) float64 ascending}, ``auc`` and ``tpr_at_fpr_0.01`` {attack: (R,) float64, NaN
        where missing}, ``leakiest`` {attack: (round, auc)}.
    """
    if not per_round or not all(per_round.values()):
        raise ValueError("leakage_over_rounds needs at least one round of at least one attack")
    attacks = list(per_round)
    rounds: dict[str, Floats] = {}
    series: dict[str, dict[str, Floats]] = {key: {} for key, *_ in ROUND_PANELS}
    leakiest: dict[str, tuple[int, float]] = {}
    tops: dict[str, int] = {}
    for attack in attacks:
        by_round = per_round[attack]
        order = sorted(by_round)
        missing = [r for r in order if "auc" not in by_round[r]]
        if missing:
            raise ValueError(f"{attack}: rounds {missing} have no 'auc'")
        rounds[attack] = np.array(order, dtype=np.float64)
        for key, *_ in ROUND_PANELS:
            values = [by_round[r].get(key, np.nan) for r in order]
            series[key][attack] = np.array(values, dtype=np.float64)
        aucs = series["auc"][attack]
        if np.isnan(aucs).all():
            raise ValueError(f"{attack}: every round's AUC is NaN")
        top = int(np.nanargmax(aucs))  # first maximum: the earliest leakiest round
        tops[attack] = top
        leakiest[attack] = (order[top], float(aucs[top]))

    fig = new_figure("Leakage over rounds (attacks on each round)", subtitle, size=(9.0, 4.6))
    panels = fig.subplots(1, 2)
    longest = max(r.size for r in rounds.values())
    marker = "o" if longest <= 30 else None
    for ax, (key, ylabel, chance, chance_label) in zip(panels, ROUND_PANELS, strict=True):
        for i, attack in enumerate(attacks):
            x, y = rounds[attack], series[key][attack]
            at, value = leakiest[attack]
            label = f"{attack} (max AUC {value:.3f}, round {at})"
            ax.plot(x, y, color=f"C{i}", marker=marker, markersize=3, label=label)
            top = tops[attack]
            ax.plot(
                [x[top]],
                [y[top]],
                marker="*",
                markersize=12,
                markeredgecolor="black",
                linestyle="",
                color=f"C{i}",
            )
        ax.axhline(
            chance,
            color="grey",
            linestyle="--",
            linewidth=1,
            zorder=BASELINE_ZORDER,
            label=chance_label,
        )
        ax.set_xlabel("FedAvg round attacked")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    panels[1].set_ylim(bottom=0.0)
    # One legend below both panels, so that it never hides a curve.
    handles = [
        *panels[0].get_lines()[: 2 * len(attacks) : 2],
        *(ax.get_lines()[-1] for ax in panels),
    ]
    handles.append(
        Line2D(
            [],
            [],
            marker="*",
            markersize=10,
            linestyle="",
            color="white",
            markeredgecolor="black",
            label="leakiest round (max AUC)",
        )
    )
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8)
    data = {"attacks": attacks, "rounds": rounds, **series, "leakiest": leakiest}
    return Plot("leakage_over_rounds", fig, data)

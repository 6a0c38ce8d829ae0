"""The leakage report's plain words: a verdict per attack and observer, settings, captions.

Everything here turns run records into sentences a colleague can read without fedgen: who
attacks (the observer), what they learn at a low false-positive rate beside chance, which
settings the runs share and which were swept, and what each figure shows. Plain functions of
:class:`~fedgen.reporting.report.RunRecord` values; no HTML.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from fedgen.attacks.observers import OBSERVERS

if TYPE_CHECKING:
    from fedgen.reporting.report import RunRecord

OBSERVER_WORDS = {
    "server": "the server",
    "peer": "a peer (another participant)",
    "public": "the public (anyone given the final model)",
}
ASSUMED_LIA = "the server (single-sample gradients, an assumed view)"
_OBSERVER_OF_MODEL = {"client": "server", "global": "public"}  # runs from before ``observer``
KINDS = ("membership", "label", "count")


def observer_of(record: RunRecord, attack: str) -> str:
    """Who ran ``attack`` in ``record``, in words (``"the server"``, ...); ``""`` if unknown.

    ``attack.<name>.observer`` where set; in runs from before that option, the attacked
    ``attack.<name>.model`` (``client``: the server, ``global``: the public). Label inference
    from single-sample gradients (``lia``) names no observer: it assumes the server sees each
    participant's own gradient, and says so.
    """
    observer = record.params.get(f"attack.{attack}.observer", "")
    if observer not in OBSERVERS:
        observer = _OBSERVER_OF_MODEL.get(record.params.get(f"attack.{attack}.model", ""), "")
    if observer:
        return OBSERVER_WORDS[observer]
    if _target_class(record, attack) == "GradientLIA" or attack == "lia":
        return ASSUMED_LIA
    return ""


def _target_class(record: RunRecord, attack: str) -> str:
    return record.params.get(f"attack.{attack}._target_", "").rpartition(".")[2]


def attack_kind(record: RunRecord, attack: str) -> str:
    """``"membership"``, ``"label"`` or ``"count"``: what ``attack`` infers; ``""`` if unknown.

    The attack class's own ``kind`` when its ``_target_`` is a fedgen class that imports;
    otherwise (runs of attacks since renamed) read from the metrics it logged: case counts
    (``cases_mae``) are counts, a population baseline (``population_auc``) or the name ``lia``
    means label inference, any other AUC membership.
    """
    target = record.params.get(f"attack.{attack}._target_", "")
    if target.startswith("fedgen."):
        module, _, name = target.rpartition(".")
        try:
            kind = getattr(getattr(importlib.import_module(module), name), "kind", "")
        except (ImportError, AttributeError):
            kind = ""
        if kind in KINDS:
            return str(kind)
    metrics = record.metrics
    if f"{attack}/cases_mae" in metrics:
        return "count"
    if f"{attack}/population_auc" in metrics or (attack == "lia" and f"{attack}/auc" in metrics):
        return "label"
    return "membership" if f"{attack}/auc" in metrics else ""


def percent(share: float) -> str:
    """A share as a percentage: ``21%``, ``1.3%`` below 10%, ``0%`` for nothing."""
    value = 100.0 * share
    if value == 0.0 or value >= 9.95:
        return f"{value:.0f}%"
    return f"{value:.1f}%"


def _auc(metrics: Mapping[str, float], attack: str) -> tuple[str, bool | None]:
    """``AUC 0.93 [0.91, 0.94]`` and whether the interval holds 0.5 (None: no interval)."""
    value = metrics[f"{attack}/auc"]
    low, high = metrics.get(f"{attack}/auc_ci_low"), metrics.get(f"{attack}/auc_ci_high")
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"AUC {value:.2f} (no bootstrap interval)", None
    return f"AUC {value:.2f} [{low:.2f}, {high:.2f}]", low <= 0.5 <= high


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def membership_verdict(record: RunRecord, attack: str) -> str:
    """E.g. "At 1% false positives the server identifies 21% of participants (chance: 1%);
    AUC 0.93 [0.91, 0.94]." An AUC interval holding 0.5 adds "no measurable membership
    leakage"; a pool too small for a 1% false-positive rate says so instead of a rate.
    Clauses are joined by "; "."""
    metrics = record.metrics
    who = observer_of(record, attack) or f"the attacker ({attack})"
    auc, chance = _auc(metrics, attack)
    tpr = metrics.get(f"{attack}/tpr_at_fpr_0.01")
    measured = tpr is not None and math.isfinite(tpr)
    if tpr is not None and measured:
        parts = [
            f"At 1% false positives {who} identifies {percent(tpr)} of participants (chance: 1%)",
            auc,
        ]
    else:
        parts = [
            f"{_capital(who)} separates participants from non-participants with {auc} (chance: 0.5)"
        ]
    if chance:
        parts.append("the interval holds 0.5: no measurable membership leakage")
    elif chance is False and metrics[f"{attack}/auc_ci_high"] < 0.5:
        parts.append("below chance (the score ranks participants lower)")
    if not measured:
        parts.append("too few non-participants in the pool for a rate at 1% false positives")
    return "; ".join(parts) + "."


def label_verdict(record: RunRecord, attack: str) -> str:
    """E.g. "The server infers the phenotype of a known participant with AUC 0.87 [0.85,
    0.90] (a polygenic score from the population: 0.62)." Qualified when the interval holds
    0.5 or does not clear the population score."""
    metrics = record.metrics
    who = observer_of(record, attack) or f"the attacker ({attack})"
    auc, chance = _auc(metrics, attack)
    text = f"{_capital(who)} infers the phenotype of a known participant with {auc}"
    population = metrics.get(f"{attack}/population_auc")
    if population is not None:
        text += f" (a polygenic score from the population: {population:.2f})"
    else:
        text += " (chance: 0.5)"
    if chance:
        text += "; the interval holds 0.5: no measurable phenotype leakage"
    elif (
        chance is False and population is not None and metrics[f"{attack}/auc_ci_low"] <= population
    ):
        text += "; no better than the population's polygenic score"
    return text + "."


def count_verdict(record: RunRecord, attack: str) -> str:
    """E.g. "The server estimates each client's number of cases to within 3.2 on average
    (guessing from the population prevalence: 12.5)."; "" without ``cases_mae``."""
    metrics = record.metrics
    mae = metrics.get(f"{attack}/cases_mae")
    if mae is None:
        return ""
    who = observer_of(record, attack) or f"the attacker ({attack})"
    text = f"{_capital(who)} estimates each client's number of cases to within {mae:.1f} on average"
    trivial = metrics.get(f"{attack}/cases_trivial_mae")
    if trivial is not None:
        text += f" (guessing from the population prevalence: {trivial:.1f})"
        if mae >= trivial:
            text += "; no better than that guess"
    return text + "."


def attribution_verdict(record: RunRecord, attack: str) -> str:
    """E.g. "The server attributes a known participant to its client with 64% accuracy
    (chance: 20%)."; "" where the attack attributes no one (no ``client_accuracy``)."""
    accuracy = record.metrics.get(f"{attack}/client_accuracy")
    if accuracy is None:
        return ""
    who = observer_of(record, attack) or f"the attacker ({attack})"
    text = f"{_capital(who)} attributes a known participant to its client with "
    text += f"{percent(accuracy)} accuracy"
    chance = record.metrics.get(f"{attack}/client_chance")
    return text + (f" (chance: {percent(chance)})." if chance is not None else ".")


def verdicts(record: RunRecord) -> list[tuple[str, str]]:
    """``(attack, sentence)`` for every attack of ``record``, in the run's attack order.

    A membership or label attack has one sentence; an attack that also attributes
    participants to clients (alignment) a second one; a count attack one if it logged its
    error. Attacks without results (failed, or none) have none.
    """
    out: list[tuple[str, str]] = []
    names = [a.strip() for a in record.params.get("attack", "").split(",")]
    for attack in dict.fromkeys(a for a in names if a and a != "none"):
        kind = attack_kind(record, attack)
        sentences = []
        if kind == "membership" and f"{attack}/auc" in record.metrics:
            sentences.append(membership_verdict(record, attack))
        elif kind == "label" and f"{attack}/auc" in record.metrics:
            sentences.append(label_verdict(record, attack))
        elif kind == "count":
            sentences.append(count_verdict(record, attack))
        sentences.append(attribution_verdict(record, attack))
        out += [(attack, s) for s in sentences if s]
    return out


def _is_threshold(param: str) -> bool:
    return param == "threshold" or param.endswith(".threshold")


def sweep_verdicts(
    records: Sequence[RunRecord], swept: Sequence[str]
) -> list[tuple[str, str, str]]:
    """``(attack, setting, sentence)`` for ``records`` (ordered), one per attack and setting.

    ``setting`` names the swept params' values (``""`` when nothing is swept). The verdicts
    do not depend on a threshold (AUC, the rate at 1% false positives), so runs that differ
    only in thresholds give one line, unless their sentences differ (then the threshold is
    named too). Lines are grouped by attack, in order of first appearance.
    """
    free = [p for p in swept if not _is_threshold(p)]
    lines: list[tuple[str, str, str, str]] = []  # attack, setting, sentence, setting+threshold
    for record in records:
        short = ", ".join(f"{p}={record.params.get(p, '')}" for p in free)
        full = ", ".join(f"{p}={record.params.get(p, '')}" for p in swept)
        lines += [(attack, short, sentence, full) for attack, sentence in verdicts(record)]
    sentences: dict[tuple[str, str], set[str]] = {}
    for attack, short, sentence, _ in lines:
        sentences.setdefault((attack, short), set()).add(sentence)
    out: dict[tuple[str, str, str], None] = {}
    for attack, short, sentence, full in lines:
        setting = short if len(sentences[attack, short]) == 1 else full
        out[attack, setting, sentence] = None
    attacks = list(dict.fromkeys(a for a, *_ in lines))
    return sorted(out, key=lambda line: attacks.index(line[0]))  # stable


# Key settings of the header: (label, params whose values are shown, in this order).
KEY_SETTINGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Cohort (individuals)", ("dataset.n_individuals",)),
    ("SNPs", ("dataset.n_snps",)),
    ("Data", ("dataset.name", "dataset._target_")),
    ("Clients", ("federation.num_clients",)),
    ("Rounds", ("federation.num_rounds",)),
    ("Local epochs", ("federation.local_epochs",)),
    ("Model", ("model.name", "model._target_")),
    ("Evaluation pool", ("evaluation",)),
    ("Defenses", ()),  # from every defense.* param: see defenses_of
    ("Attacks", ("attack",)),
    ("Seeds", ("seed",)),
)


def _values(records: Sequence[RunRecord], keys: Sequence[str]) -> list[str]:
    """The distinct values of the first of ``keys`` that any record has, in record order."""
    for key in keys:
        values = [r.params[key] for r in records if key in r.params]
        if values:
            short = key.endswith("._target_")
            return list(dict.fromkeys(v.rpartition(".")[2] if short else v for v in values))
    return []


def defenses_of(params: Mapping[str, str]) -> list[str]:
    """The defenses in ``params`` with their settings: ``client_dp (noise_multiplier=1.0)``."""
    names: dict[str, list[str]] = {}
    for key, value in sorted(params.items()):
        parts = key.split(".")
        if parts[0] == "defense" and len(parts) >= 2:
            option = names.setdefault(parts[1], [])
            if len(parts) == 3 and not parts[2].startswith("_"):
                option.append(f"{parts[2]}={value}")
    return [f"{n} ({', '.join(o)})" if o else n for n, o in names.items()]


def key_settings(records: Sequence[RunRecord]) -> list[tuple[str, str]]:
    """``(label, value)`` for the header: cohort, SNPs, clients, rounds, model, pool,
    defenses, attacks, seeds, fedgen version, git commit and when the runs started.

    A setting with several values across ``records`` lists them all (``5, 10``); one no run
    recorded is left out. Defenses are ``none`` when no run used one; a defense option that
    differs across runs reads ``swept``.
    """
    out = []
    for label, keys in KEY_SETTINGS:
        if not keys:  # a swept defense option reads "swept", its values are listed apart
            seen: dict[str, set[str]] = {}
            for r in records:
                for k, v in r.params.items():
                    seen.setdefault(k, set()).add(v)
            shown = [
                {k: v if len(seen[k]) == 1 else "swept" for k, v in r.params.items()}
                for r in records
            ]
            defenses = dict.fromkeys("; ".join(defenses_of(p)) or "none" for p in shown)
            out.append((label, " | ".join(defenses)))
        elif values := _values(records, keys):
            out.append((label, ", ".join(values)))
    for label, field in (("fedgen version", "version"), ("git commit", "git_commit")):
        values = list(dict.fromkeys(getattr(r, field) for r in records if getattr(r, field)))
        out.append((label, ", ".join(values) if values else "not recorded"))
    started = sorted(r.started for r in records if r.started)
    if started:
        span = started[0] if started[0] == started[-1] else f"{started[0]} to {started[-1]}"
        out.append(("Runs started", span))
    return out


_BOOKKEEPING = ("attack", "cache", "cache_dir", "figures", "objective")


def fixed_params(records: Sequence[RunRecord]) -> dict[str, str]:
    """Params every record has with one value (``seed`` too, if it is the same), sorted.

    Bookkeeping (``tracking.*``, ``hydra*``, the cache, figures, objective) is left out: it
    does not change what was measured.
    """
    if not records:
        return {}
    keys = set.intersection(*(set(r.params) for r in records)) - set(_BOOKKEEPING)
    keys = {k for k in keys if not k.startswith(("tracking.", "hydra"))}
    return {
        k: records[0].params[k] for k in sorted(keys) if len({r.params[k] for r in records}) == 1
    }


def caption(name: str) -> str:
    """What the figure saved as ``<name>.png`` shows, in a sentence or two ("" if unknown)."""
    if name.startswith("metrics_vs_"):
        param = name.removeprefix("metrics_vs_")
        return (
            f"AUC, advantage and true-positive rate at 1% false positives against {param}: "
            "one line per attack and per value of every other swept setting (never averaged "
            "across them). A point over several seeds is their mean with ± SD bars; a point of "
            "one run has its bootstrap 95% AUC interval as bars. Dotted grey: chance."
        )
    if name.startswith("threshold_curves_"):
        attack = name.removeprefix("threshold_curves_")
        return (
            f"{attack}: precision, recall and F1 of its calls as its decision threshold moves; "
            "dotted: the threshold this run used; dashed: the F1 of calling every candidate "
            "positive."
        )
    return _CAPTIONS.get(name, "")


_CAPTIONS = {
    "roc": (
        "ROC curves on log-log axes: the share of participants each attack identifies (true "
        "positives) against the share of non-participants it wrongly accuses (false "
        "positives), over every threshold. The low-false-positive corner on the left is what "
        "matters for privacy; dots mark each attack's own threshold; dotted: chance."
    ),
    "prf_vs_threshold": (
        "Precision, recall and F1 of each attack's calls against the threshold; dashed: the "
        "trivial F1 of calling every candidate a participant, which an attack must beat."
    ),
    "privacy_utility_frontier": (
        "Privacy-utility frontier: the federated model's test accuracy against the strongest "
        "membership attack of each observer (AUC left, true-positive rate at 1% false "
        "positives right), one point per defense setting, labelled with the accounted epsilon."
    ),
    "leakage_over_rounds": (
        "Leakage of the attacks that read each round's updates, round by round: AUC and the "
        "true-positive rate at 1% false positives, if the attacker had stopped at that round."
    ),
    "client_auc": "Each attack's AUC per client: whose participants leak most.",
    "gradient_norm_histogram": (
        "Per-sample gradient norms of participants (members) and non-participants: the "
        "separation G-MIA exploits; the line is its threshold."
    ),
    "training_curves": "Loss and accuracy of the global model per round, on train and test.",
    "snp_pca": "The cohort's genotypes on their first two principal components, by phenotype.",
    "top_snp_correlations": "The SNPs most correlated with the phenotype (Pearson r).",
}


NOTE_TAG = "mlflow.note.content"  # the run's Description in MLflow's UI (Markdown)


def run_note(record: RunRecord) -> str:
    """The run's description: one Markdown bullet per verdict, or "" if none."""
    return "\n".join(f"- **{attack}**: {sentence}" for attack, sentence in verdicts(record))


def sweep_note(records: Sequence[RunRecord], swept: Sequence[str]) -> str:
    """A sweep parent run's description: its verdicts, one bullet per attack and setting."""
    lines = []
    for attack, setting, sentence in sweep_verdicts(records, swept):
        where = f" ({setting})" if setting else ""
        lines.append(f"- **{attack}**{where}: {sentence}")
    return "\n".join(lines)


def sweep_headlines(records: Sequence[RunRecord]) -> dict[str, float]:
    """The sweep's headline metrics for its parent run: each membership attack's best AUC,
    advantage and TPR at 1% false positives over the jobs, as ``sweep/<attack>/<metric>_max``
    (names of their own, so the parent is no point among its jobs' series in MLflow charts)."""
    out: dict[str, float] = {}
    for record in records:
        for key, value in record.metrics.items():
            attack, _, metric = key.partition("/")
            if metric in ("auc", "advantage", "tpr_at_fpr_0.01"):
                name = f"sweep/{attack}/{metric}_max"
                out[name] = max(out.get(name, float("-inf")), float(value))
    return out

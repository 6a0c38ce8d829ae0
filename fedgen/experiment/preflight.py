"""Check a command line before any job runs: every override, every value of a sweep.

Hydra reports an unknown key or option in several lines and suggests ``+key=value``, which would
silently run with the typo ignored; and in a sweep a bad value fails only when its job comes up,
after the good ones ran. :func:`preflight` composes the config of every job the command line
asks for (each swept value once) and builds its objects (:func:`fedgen.experiment.build.
check_config`), so that the first problem is one :class:`ConfigError` line with a "did you mean",
before anything is written.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, Override
from hydra.errors import HydraException
from omegaconf import DictConfig

from fedgen.core.errors import ConfigError, FedgenError
from fedgen.experiment.build import check_config
from fedgen.experiment.overrides import sets_plain_key, with_overrides

CONFIG_MODULE = "fedgen.conf"
CONFIG_NAME = "config"
# Command-line flags that need no checking (or that Hydra handles better itself).
_MULTIRUN = ("--multirun", "-m")
# A sweep with more values than this is checked at each parameter's first and last value only
# (each check composes a config: ~0.4 s).
MAX_CHECKED = 40


def command_overrides(args: Sequence[str]) -> tuple[list[str], bool] | None:
    """The overrides and the multirun flag of a command line; None if it has other flags."""
    overrides: list[str] = []
    multirun = False
    for arg in args:
        if arg in _MULTIRUN:
            multirun = True
        elif arg.startswith("-"):
            return None  # --cfg, --info, --config-dir, ...: Hydra's own business
        else:
            overrides.append(arg)
    return overrides, multirun


def preflight(args: Sequence[str]) -> int:
    """Check the command line ``args`` (without the program name); return the number of jobs.

    Raises
    ------
    ConfigError
        An override that cannot be read, an unknown key or option (with the closest names), a
        sweep without ``--multirun``, or a value that cannot work in some job (named with the
        swept value it came with).
    """
    parsed = command_overrides(args)
    if parsed is None:
        return 0
    lines, multirun = parsed
    overrides = _parse(lines)
    ours = [o for o in overrides if not o.key_or_group.startswith("hydra")]
    groups = _groups()
    for o in ours:
        # Every option of every group override, before composing: Hydra skips an unknown
        # option of an optional group (experiment=...) without a word.
        message = _unknown_option(o, groups)
        if message:
            raise ConfigError(message)
        if o.type.name == "CHANGE" and o.key_or_group.replace(".", "/") in groups:
            group = o.key_or_group.replace(".", "/")
            if "." in o.key_or_group:
                raise ConfigError(
                    f"{o.input_line} sets a key, but {o.key_or_group} is a config group: "
                    f"choose its option with a slash, {group}={_first(o)}"
                )
    sweeps = [o for o in ours if o.is_sweep_override()]
    if sweeps and not multirun:
        o = sweeps[0]
        raise ConfigError(
            f"{o.input_line} lists several values, which makes a sweep: add --multirun "
            f"(python -m fedgen --multirun {' '.join(lines)}); to pass a list to one run, "
            f"write {o.key_or_group}=[{_values_text(o)}]"
        )
    if any(o.is_sweep_override() and _values(o) is None for o in ours):
        return 0  # ranges and intervals (an optimiser's search space): checked by each job
    with _config_module():
        base = _compose([_line(o, _first(o)) for o in ours], ours)
        jobs = 1
        for o in sweeps:
            values = _values(o) or []
            if sum(len(_values(x) or []) for x in sweeps) > MAX_CHECKED:
                values = values[:1] + values[-1:]  # a long sweep: its ends (and the types)
            for value in values[1:]:
                jobs += 1
                # A plain key: its value changes, not the config files (no new composition).
                plain = sets_plain_key(o, groups.__contains__)
                cfg = _changed(base, o, value, ours) if plain else None
                if cfg is None:
                    others = [_line(x, value if x is o else _first(x)) for x in ours]
                    cfg = _compose(others, ours)
                _check(cfg, f"in the job with {o.key_or_group}={value}")
        _check(base, "" if not sweeps else "in the sweep's first job")
    return jobs


def _parse(lines: Sequence[str]) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(list(lines))
    except HydraException as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"cannot read the command line: {first}") from None


def _values(o: Override) -> list[str] | None:
    """A sweep's values as override text, or None for ranges and intervals."""
    if not o.is_sweep_override():
        return [o.get_value_element_as_str()]
    glob = o.value()
    if isinstance(glob, Glob):
        options = _groups().get(o.key_or_group)
        return glob.filter(options) if options is not None else None
    if o.is_choice_sweep():
        return list(o.sweep_string_iterator())
    return None


def _values_text(o: Override) -> str:
    return ",".join(_values(o) or [])


def _first(o: Override) -> str:
    values = _values(o)
    return values[0] if values else o.get_value_element_as_str()


def _line(o: Override, value: str) -> str:
    prefix = {"ADD": "+", "FORCE_ADD": "++", "DEL": "~"}.get(o.type.name, "")
    if o.type.name == "DEL" and not value:
        return f"~{o.key_or_group}"
    key = o.key_or_group if o.package is None else f"{o.key_or_group}@{o.package}"
    return f"{prefix}{key}={value}"


class _config_module:
    """Hydra's config module, initialised for the checks (and cleared after)."""

    def __enter__(self) -> None:
        GlobalHydra.instance().clear()
        self._init = initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3")
        self._init.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._init.__exit__(*exc)
        GlobalHydra.instance().clear()


def _compose(lines: list[str], overrides: Sequence[Override]) -> DictConfig:
    try:
        return compose(config_name=CONFIG_NAME, overrides=lines)
    except HydraException as exc:
        raise ConfigError(_explain(exc, overrides)) from None


def _changed(
    base: DictConfig, o: Override, value: str, overrides: Sequence[Override]
) -> DictConfig | None:
    """``base`` with the plain key of ``o`` set to ``value``: what composing gives, faster.

    Hydra applies key overrides last, to the config the groups composed, so a swept key's
    other values need no new composition (one costs ~0.2 s: a 20-value sweep's preflight).
    None for a mapping value, which would merge into the first one: it is composed as usual.
    """
    (override,) = _parse([_line(o, value)])
    if isinstance(override.value(), dict):
        return None
    try:
        return with_overrides(base, [override])
    except HydraException as exc:
        raise ConfigError(_explain(exc, overrides)) from None


def _check(cfg: DictConfig, where: str) -> None:
    try:
        check_config(cfg)
    except FedgenError as exc:
        raise type(exc)(f"{exc} ({where})" if where else str(exc)) from None


def _explain(exc: HydraException, overrides: Sequence[Override]) -> str:
    """One line for a composition error: the override at fault and what was probably meant."""
    text = str(exc)
    groups = _groups()
    chosen = [_line(o, _first(o)) for o in overrides if o.key_or_group in groups]
    with _default_config(chosen) as base:
        for o in overrides:
            key = o.key_or_group
            message = _unknown_option(o, groups)
            if message:
                return message
            changes = o.type.name == "CHANGE" and key not in groups
            if changes and base is not None and not _has_key(base, key):
                return _unknown_key(key, base)
    first = text.strip().splitlines()[0]
    return f"the config cannot be composed: {first}"


class _default_config:
    """The config composed with only the group choices, or None if even that fails."""

    def __init__(self, groups: list[str]) -> None:
        self.groups = groups

    def __enter__(self) -> DictConfig | None:
        try:
            return compose(config_name=CONFIG_NAME, overrides=self.groups)
        except HydraException:
            return None

    def __exit__(self, *exc: object) -> None:
        return None


def _unknown_option(o: Override, groups: dict[str, list[str]]) -> str:
    """The message for a group override naming an option the group does not have, or ""."""
    key = o.key_or_group
    if key not in groups or o.type.name == "DEL":
        return ""
    options = groups[key]
    for value in _values(o) or []:
        for name in _group_items(value):
            if name not in options:
                hint = _did_you_mean(name, options)
                return (
                    f"{key}={name} is not an option of `{key}`{hint}; "
                    f"the options are: {', '.join(options)}"
                )
    return ""


def _unknown_key(key: str, base: DictConfig) -> str:
    keys = sorted(_all_keys(base))
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    # A key is most likely a typo of a key at the same depth.
    same_depth = [k for k in keys if k.count(".") == key.count(".")]
    hint = _did_you_mean(key, same_depth) or _did_you_mean(key, keys)
    extra = ""
    if parent == "model" or parent.startswith("model."):
        extra = (
            f"; a model argument the config does not list yet is added with +{key}=<value> "
            "(scikit-learn then checks it)"
        )
    return f"{key} is not a config key{hint}{extra}"


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _has_key(cfg: DictConfig, key: str) -> bool:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False
        node = node._get_node(part)
    return True


def _all_keys(cfg: DictConfig, prefix: str = "") -> Iterator[str]:
    for key in cfg:
        if key == "hydra":
            continue
        name = f"{prefix}{key!s}"
        yield name
        node = cfg._get_node(key)
        if isinstance(node, DictConfig):
            yield from _all_keys(node, f"{name}.")


def _group_items(value: str) -> list[str]:
    """``mia`` -> [mia]; ``[mia,gmia]`` -> [mia, gmia]; ``null`` -> []."""
    value = value.strip()
    if value in ("null", ""):
        return []
    if value.startswith("[") and value.endswith("]"):
        return [v.strip() for v in value[1:-1].split(",") if v.strip()]
    return [value]


def _groups() -> dict[str, list[str]]:
    """Every config group (``attack``, ``federation/backend``, ...) with its options."""
    out: dict[str, list[str]] = {}
    root = resources.files(CONFIG_MODULE)

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            name = child.name
            if child.is_dir() and not name.startswith(("_", ".")) and name != "hydra":
                group = f"{prefix}{name}"
                out[group] = sorted(
                    c.name.removesuffix(".yaml")
                    for c in child.iterdir()
                    if c.name.endswith(".yaml")
                )
                walk(child, f"{group}/")

    walk(root, "")
    return out


def groups_help() -> str:
    """The config groups and their options, one line each (for ``--help``)."""
    return "\n".join(
        f"  {group:<20} {', '.join(options)}" for group, options in sorted(_groups().items())
    )

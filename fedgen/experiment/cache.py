"""On-disk cache of trained federations, so that a sweep over attack settings trains once."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import fedgen
from fedgen.core.io import atomic_write_bytes
from fedgen.core.records import FederationResult, LinearParams, RoundRecord

log = logging.getLogger("fedgen")

FORMAT_VERSION = 1

# What reading a damaged entry can raise (JSONDecodeError and UnicodeDecodeError are ValueErrors;
# zlib.error and NotImplementedError come from compressed or exotic members of a foreign zip).
_UNREADABLE: tuple[type[Exception], ...] = (OSError, ValueError, KeyError, EOFError)
_UNREADABLE += (zipfile.BadZipFile, zlib.error, NotImplementedError)


class _CorruptEntry(ValueError):
    """A cache file that was read but does not hold what the cache writes."""


def _update_framed(digest: Any, chunk: bytes | memoryview) -> None:
    """Feed ``chunk`` to ``digest`` behind its 8-byte length, so that no two inputs collide."""
    digest.update(len(chunk).to_bytes(8, "big"))
    digest.update(chunk)


def training_key(material: Mapping[str, Any], arrays: Sequence[NDArray[Any]]) -> str:
    """Return the sha256 hex digest identifying one training run.

    Parameters
    ----------
    material : mapping of str to JSON-serialisable values
        Resolved configs, seed, fedgen version; hashed as canonical JSON (sorted keys, compact).
    arrays : sequence of ndarray
        Numeric inputs (genotypes, labels, split indices); hashed with dtype, shape and
        C-order bytes.

    Returns
    -------
    str
        64 lowercase hex characters.
    """
    digest = hashlib.sha256()
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    _update_framed(digest, text.encode("utf-8"))
    digest.update(len(arrays).to_bytes(8, "big"))
    for array in arrays:
        if array.dtype.hasobject:
            raise ValueError("training_key hashes numeric arrays only, not object arrays")
        header = json.dumps([array.dtype.str, list(array.shape)], separators=(",", ":"))
        _update_framed(digest, header.encode("ascii"))
        _update_framed(digest, np.ascontiguousarray(array).data)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """Return ``$FEDGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/fedgen``, else ``~/.cache/fedgen``."""
    if explicit := os.environ.get("FEDGEN_CACHE_DIR"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "fedgen"
    return Path.home() / ".cache" / "fedgen"


def _encode(key: str, result: FederationResult) -> dict[str, NDArray[Any]]:
    """Flatten ``result`` into the plain numeric arrays of one ``.npz`` entry."""
    initial, rounds = result.initial_params, result.rounds
    if np.ndim(initial.coef) != 1:
        raise ValueError("initial coef is not one-dimensional")
    d = int(np.shape(initial.coef)[0])
    c = len(rounds[0].client_params) if rounds else 0
    names = list(rounds[0].metrics) if rounds else []
    for rec in rounds:
        coefs = [rec.global_params.coef, *(p.coef for p in rec.client_params)]
        if any(np.shape(coef) != (d,) for coef in coefs):
            raise ValueError(f"round {rec.round} has a coef whose shape is not ({d},)")
        if len(rec.client_params) != c or len(rec.client_num_examples) != c:
            raise ValueError(f"round {rec.round} does not have {c} clients")
        if set(rec.metrics) != set(names):
            raise ValueError(f"round {rec.round} reports other metrics than round 1")
    meta = {"format": FORMAT_VERSION, "key": key, "fedgen_version": fedgen.__version__}
    meta_bytes = json.dumps({**meta, "metric_names": names}).encode("utf-8")
    n, m, f64, i64 = len(rounds), len(names), np.float64, np.int64
    glob = [rec.global_params for rec in rounds]
    local = [rec.client_params for rec in rounds]
    return {
        "initial_coef": np.array(initial.coef, f64),
        "initial_intercept": np.array(initial.intercept, f64),
        "global_coef": np.array([p.coef for p in glob], f64).reshape(n, d),
        "global_intercept": np.array([p.intercept for p in glob], f64).reshape(n),
        "client_coef": np.array([[p.coef for p in q] for q in local], f64).reshape(n, c, d),
        "client_intercept": np.array([[p.intercept for p in q] for q in local], f64).reshape(n, c),
        "client_num_examples": np.array([x.client_num_examples for x in rounds], i64).reshape(n, c),
        "round": np.array([rec.round for rec in rounds], i64).reshape(n),
        "metrics": np.array([[x.metrics[k] for k in names] for x in rounds], f64).reshape(n, m),
        "meta": np.frombuffer(meta_bytes, dtype=np.uint8),
    }


# name -> (dtype, symbolic shape) of every array an entry must hold.
_LAYOUT: dict[str, tuple[type[np.generic], str]] = {
    "initial_coef": (np.float64, "d"),
    "initial_intercept": (np.float64, ""),
    "global_coef": (np.float64, "Rd"),
    "global_intercept": (np.float64, "R"),
    "client_coef": (np.float64, "RCd"),
    "client_intercept": (np.float64, "RC"),
    "client_num_examples": (np.int64, "RC"),
    "round": (np.int64, "R"),
    "metrics": (np.float64, "RM"),
    "meta": (np.uint8, "n"),
}


def _read_meta(raw: NDArray[Any], key: str) -> list[str]:
    """Check the entry's meta JSON against ``key`` and return its metric names."""
    meta = json.loads(raw.tobytes().decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise _CorruptEntry(f"meta is not a format-{FORMAT_VERSION} JSON object")
    if meta.get("key") != key:
        raise _CorruptEntry(f"written for key {meta.get('key')!r}")
    names = meta.get("metric_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _CorruptEntry("metric_names is not a list of strings")
    if len(set(names)) != len(names):
        raise _CorruptEntry("metric_names has duplicates")
    return names


def _decode(key: str, npz: Any) -> FederationResult:
    """Rebuild the FederationResult from an open NpzFile, checking every dtype and shape."""
    arrays: dict[str, NDArray[Any]] = {}
    for name, (dtype, dims) in _LAYOUT.items():
        if name not in npz.files:
            raise _CorruptEntry(f"missing array {name!r}")
        array = npz[name]
        if array.dtype != np.dtype(dtype) or array.ndim != len(dims):
            raise _CorruptEntry(f"{name!r} is {array.dtype} {array.shape}")
        arrays[name] = array
    names = _read_meta(arrays["meta"], key)
    size = {"d": arrays["initial_coef"].shape[0], "R": arrays["round"].shape[0]}
    size |= {"C": arrays["client_intercept"].shape[1], "M": len(names)}
    for name, (_, dims) in _LAYOUT.items():
        expected = tuple(size[s] for s in dims if s != "n")
        if name != "meta" and arrays[name].shape != expected:
            raise _CorruptEntry(f"{name!r} has shape {arrays[name].shape}, expected {expected}")

    def params(coef: NDArray[Any], intercept: Any) -> LinearParams:
        return LinearParams(np.array(coef, dtype=np.float64, order="C"), float(intercept))

    rounds = tuple(
        RoundRecord(
            round=int(arrays["round"][r]),
            global_params=params(arrays["global_coef"][r], arrays["global_intercept"][r]),
            client_params=tuple(
                params(arrays["client_coef"][r, k], arrays["client_intercept"][r, k])
                for k in range(size["C"])
            ),
            client_num_examples=tuple(int(n) for n in arrays["client_num_examples"][r]),
            metrics={n: float(v) for n, v in zip(names, arrays["metrics"][r], strict=True)},
        )
        for r in range(size["R"])
    )
    initial = params(arrays["initial_coef"], arrays["initial_intercept"])
    return FederationResult(initial_params=initial, rounds=rounds)


class TrainingCache:
    """A directory of ``<key>.npz`` files, each one trained federation.

    Parameters
    ----------
    directory : Path
        Where entries live; created on the first :meth:`store`.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        """Return the file that holds (or would hold) the entry for ``key``."""
        return self.directory / f"{key}.npz"

    def load(self, key: str) -> FederationResult | None:
        """Return the stored result for ``key``, or None on a miss or a corrupt entry.

        Never unpickles; a corrupt or mismatched entry logs one warning and counts as a miss.
        """
        path = self.path(key)
        try:
            with path.open("rb") as handle:
                loaded = np.load(handle, allow_pickle=False)
                if not isinstance(loaded, np.lib.npyio.NpzFile):
                    raise _CorruptEntry("not an npz archive")
                with loaded as npz:
                    return _decode(key, npz)
        except FileNotFoundError:
            return None
        except _UNREADABLE as exc:
            reason = str(exc) or type(exc).__name__
            log.warning("cache entry %s is corrupt (%s); retraining", path, reason)
            return None

    def store(self, key: str, result: FederationResult) -> None:
        """Write ``result`` under ``key`` atomically; a failure logs a warning, never raises."""
        path = self.path(key)
        try:
            buffer = io.BytesIO()
            np.savez(buffer, allow_pickle=False, **_encode(key, result))
            atomic_write_bytes(path, buffer.getvalue())
        except (OSError, ValueError, TypeError, OverflowError) as exc:
            log.warning("could not write cache entry %s (%s); continuing uncached", path, exc)

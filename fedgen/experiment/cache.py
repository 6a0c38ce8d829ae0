"""On-disk cache of trained federations, so that a sweep over attack settings trains once."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import io
import json
import logging
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from numpy.typing import NDArray

import fedgen
from fedgen.core import cachedir
from fedgen.core.io import atomic_write_bytes
from fedgen.core.records import FederationResult, Params, RoundRecord

log = logging.getLogger("fedgen")

# 3: ``aggregate_only`` per round, and no client models in aggregate-only rounds.
FORMAT_VERSION = 3

# What reading a damaged entry can raise (JSONDecodeError and UnicodeDecodeError are ValueErrors;
# zlib.error and NotImplementedError come from compressed or exotic members of a foreign zip).
_UNREADABLE: tuple[type[Exception], ...] = (OSError, ValueError, KeyError, EOFError)
_UNREADABLE += (zipfile.BadZipFile, zlib.error, NotImplementedError)


_HASH_BLOCK_BYTES = 1 << 26  # bytes of a non-contiguous array copied at a time to hash it


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
        _update_array(digest, array)
    return digest.hexdigest()


def _update_array(digest: Any, array: NDArray[Any]) -> None:
    """Frame ``array``'s C-order bytes as :func:`_update_framed` would, never copying it whole.

    A C-contiguous array is hashed in place; any other (a column slice of a cohort, a
    transposed matrix) a bounded block of rows at a time, so a 4 GB genotype matrix is never
    copied to hash it. The digest is the same either way, and the same as framing the whole
    contiguous copy's memoryview, whose length is the array's first dimension.
    """
    digest.update(len(array.data).to_bytes(8, "big"))
    if array.flags.c_contiguous:
        digest.update(array.data)
        return
    rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(-1, 1)
    step = max(1, _HASH_BLOCK_BYTES // max(1, rows.shape[1] * array.itemsize))
    for start in range(0, rows.shape[0], step):
        digest.update(np.ascontiguousarray(rows[start : start + step]).data)


def default_cache_dir() -> Path:
    """Return ``$FEDGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/fedgen``, else ``~/.cache/fedgen``."""
    return cachedir.default_cache_dir()  # in core, so that cached data sources share it


@functools.cache
def code_digest() -> str:
    """SHA-256 of every source file of the installed fedgen package (paths and bytes).

    Part of the training key, so that any change to fedgen's code (training, models,
    defenses, ...) misses the cache instead of returning a federation trained by older code.
    """
    root = Path(fedgen.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        _update_framed(digest, path.relative_to(root).as_posix().encode("utf-8"))
        _update_framed(digest, path.read_bytes())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose numerics determine training (part of the training key)."""
    return dict(_library_versions())


@functools.lru_cache(maxsize=1)
def _library_versions() -> dict[str, str]:
    # Read once per process (0.007 s a job): installed versions do not change under a command.
    return {name: importlib.metadata.version(name) for name in _KEYED_LIBRARIES}


_KEYED_LIBRARIES = ("numpy", "scikit-learn", "scipy", "flwr")


def _stack(arrays: Sequence[NDArray[Any]], shape: tuple[int, ...], what: str) -> NDArray[Any]:
    for a in arrays:
        if np.shape(a) != shape:
            raise ValueError(f"{what} has an array of shape {np.shape(a)}, not {shape}")
    return np.array(arrays, np.float64).reshape(len(arrays), *shape)


def _encode(key: str, result: FederationResult) -> dict[str, NDArray[Any]]:
    """Flatten ``result`` into the plain numeric arrays of one ``.npz`` entry.

    Each parameter ``<name>`` of the model gives ``initial/<name>`` (shape), ``global/<name>``
    (R, shape) and ``client/<name>`` (R, C, shape), or (R, 0, shape) if the rounds are
    aggregate-only (the server saw no client model); ``aggregate_only`` is bool (R,).
    """
    initial, rounds = result.initial_params, result.rounds
    shapes = {name: tuple(np.shape(a)) for name, a in initial.items()}
    c = len(rounds[0].client_num_examples) if rounds else 0
    aggregate_only = bool(rounds) and rounds[0].aggregate_only
    names = list(rounds[0].metrics) if rounds else []
    for rec in rounds:
        if rec.aggregate_only != aggregate_only:
            raise ValueError(f"round {rec.round} differs from round 1 in aggregate_only")
        models = 0 if aggregate_only else c
        if len(rec.client_params) != models or len(rec.client_num_examples) != c:
            raise ValueError(f"round {rec.round} does not have {c} clients")
        if set(rec.metrics) != set(names):
            raise ValueError(f"round {rec.round} reports other metrics than round 1")
        for params in (rec.global_params, *rec.client_params):
            if list(params) != list(shapes):
                raise ValueError(f"round {rec.round} has parameters {list(params)}")
    meta = {"format": FORMAT_VERSION, "key": key, "fedgen_version": fedgen.__version__}
    meta |= {"metric_names": names, "params": {k: list(s) for k, s in shapes.items()}}
    n, m, f64, i64 = len(rounds), len(names), np.float64, np.int64
    k = 0 if aggregate_only else c
    out: dict[str, NDArray[Any]] = {}
    for name, shape in shapes.items():
        out[f"initial/{name}"] = np.array(initial[name], f64)
        out[f"global/{name}"] = _stack([r.global_params[name] for r in rounds], shape, name)
        local = [p[name] for r in rounds for p in r.client_params]
        out[f"client/{name}"] = _stack(local, shape, name).reshape(n, k, *shape)
    out["aggregate_only"] = np.full(n, aggregate_only, dtype=np.bool_)
    out["client_num_examples"] = np.array([x.client_num_examples for x in rounds], i64).reshape(
        n, c
    )
    out["round"] = np.array([rec.round for rec in rounds], i64).reshape(n)
    out["metrics"] = np.array([[x.metrics[k] for k in names] for x in rounds], f64).reshape(n, m)
    out["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    return out


def _read_meta(raw: NDArray[Any], key: str) -> tuple[list[str], dict[str, tuple[int, ...]]]:
    """Check the entry's meta JSON against ``key``: its metric names and parameter shapes."""
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
    params = meta.get("params")
    if not isinstance(params, dict) or not params:
        raise _CorruptEntry("params is not a non-empty object")
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape in params.items():
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise _CorruptEntry(f"parameter {name!r} has no valid shape")
        shapes[str(name)] = tuple(shape)
    return names, shapes


def _array(npz: Any, name: str, dtype: type[np.generic], shape: tuple[int, ...]) -> NDArray[Any]:
    if name not in npz.files:
        raise _CorruptEntry(f"missing array {name!r}")
    array = npz[name]
    if array.dtype != np.dtype(dtype) or array.shape != shape:
        raise _CorruptEntry(f"{name!r} is {array.dtype} {array.shape}, expected {shape}")
    return np.asarray(array)


def _decode(key: str, npz: Any) -> FederationResult:
    """Rebuild the FederationResult from an open NpzFile, checking every dtype and shape."""
    if "meta" not in npz.files:
        raise _CorruptEntry("missing array 'meta'")
    meta = npz["meta"]
    if meta.dtype != np.uint8 or meta.ndim != 1:
        raise _CorruptEntry(f"'meta' is {meta.dtype} {meta.shape}")
    names, shapes = _read_meta(meta, key)
    if "round" not in npz.files or npz["round"].ndim != 1:
        raise _CorruptEntry("missing or malformed array 'round'")
    n_rounds = int(npz["round"].shape[0])
    if "client_num_examples" not in npz.files or npz["client_num_examples"].ndim != 2:
        raise _CorruptEntry("missing or malformed array 'client_num_examples'")
    c = int(npz["client_num_examples"].shape[1])
    rounds_arr = _array(npz, "round", np.int64, (n_rounds,))
    counts = _array(npz, "client_num_examples", np.int64, (n_rounds, c))
    metrics = _array(npz, "metrics", np.float64, (n_rounds, len(names)))
    aggregate = _array(npz, "aggregate_only", np.bool_, (n_rounds,))
    aggregate_only = bool(aggregate.any())
    if aggregate_only and not aggregate.all():
        raise _CorruptEntry("'aggregate_only' mixes rounds with and without client models")
    k = 0 if aggregate_only else c
    initial, glob, local = {}, {}, {}
    for name, shape in shapes.items():
        initial[name] = _array(npz, f"initial/{name}", np.float64, shape)
        glob[name] = _array(npz, f"global/{name}", np.float64, (n_rounds, *shape))
        local[name] = _array(npz, f"client/{name}", np.float64, (n_rounds, k, *shape))

    def params(source: dict[str, NDArray[Any]], *index: int) -> Params:
        return {k: np.array(v[index], dtype=np.float64, order="C") for k, v in source.items()}

    rounds = tuple(
        RoundRecord(
            round=int(rounds_arr[r]),
            global_params=params(glob, r),
            client_params=tuple(params(local, r, j) for j in range(k)),
            client_num_examples=tuple(int(x) for x in counts[r]),
            metrics={n: float(v) for n, v in zip(names, metrics[r], strict=True)},
            aggregate_only=aggregate_only,
        )
        for r in range(n_rounds)
    )
    result = FederationResult(initial_params=params(initial), rounds=rounds)
    if not _finite(result):
        raise _CorruptEntry("non-finite parameters")
    return result


def _finite(result: FederationResult) -> bool:
    """True if every recorded parameter is finite (training never stores NaN or inf)."""
    arrays = [*result.initial_params.values()]
    for rec in result.rounds:
        arrays += [*rec.global_params.values(), *(a for p in rec.client_params for a in p.values())]
    return all(np.isfinite(a).all() for a in arrays)


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
        except (PermissionError, NotADirectoryError, IsADirectoryError) as exc:
            log.warning(
                "cache entry %s cannot be read (%s); check cache_dir (or cache=false); retraining",
                path,
                exc,
            )
            return None
        except _UNREADABLE as exc:
            reason = str(exc) or type(exc).__name__
            log.warning("cache entry %s is corrupt (%s); retraining", path, reason)
            return None

    def load_or_train(
        self, key: str, train: Callable[[], FederationResult]
    ) -> tuple[FederationResult, bool]:
        """The entry for ``key``, else ``train()``'s result, stored; and whether it was loaded.

        Jobs of a parallel sweep (``hydra/launcher=joblib``) that need the same federation
        train it once: the first holds the entry's file lock while it trains and stores, the
        others wait on the lock and then load what it stored. The lock is the operating
        system's (``flock``), so a job that dies releases it. A directory that cannot hold the
        lock logs a warning and trains without it, like :meth:`store`.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.directory / f".{key}.lock"))
            lock.acquire()
        except OSError as exc:
            log.warning("cannot lock cache entry %s (%s); training unlocked", self.path(key), exc)
            result = train()
            self.store(key, result)
            return result, False
        try:
            cached = self.load(key)
            if cached is not None:
                return cached, True
            result = train()
            self.store(key, result)
            return result, False
        finally:
            lock.release()

    def store(self, key: str, result: FederationResult) -> None:
        """Write ``result`` under ``key`` atomically; a failure logs a warning, never raises."""
        path = self.path(key)
        if not _finite(result):
            log.warning("not caching a federation with non-finite parameters (%s)", path.name)
            return
        try:
            buffer = io.BytesIO()
            np.savez(buffer, allow_pickle=False, **_encode(key, result))
            atomic_write_bytes(path, buffer.getvalue())
        except (OSError, ValueError, TypeError, OverflowError) as exc:
            log.warning("could not write cache entry %s (%s); continuing uncached", path, exc)

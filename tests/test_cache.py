"""Tests for the on-disk training cache: bit-exact round trips, keys, and corrupt entries."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

import fedgen
from fedgen.core.records import FederationResult, Params, RoundRecord
from fedgen.experiment.cache import (
    FORMAT_VERSION,
    TrainingCache,
    code_digest,
    default_cache_dir,
    library_versions,
    training_key,
)
from fedgen.models import MLP

KEY = "a" * 64
OTHER_KEY = "b" * 64


def _params(coef: list[float], intercept: float) -> Params:
    """The linear model's parameters: coef (p,) and intercept (1,)."""
    return {
        "coef": np.array(coef, dtype=np.float64),
        "intercept": np.array([intercept], dtype=np.float64),
    }


def make_result(n_rounds: int = 3, n_clients: int = 2, d: int = 4) -> FederationResult:
    rng = np.random.default_rng(0)
    rounds = tuple(
        RoundRecord(
            round=r + 1,
            global_params=_params(list(rng.normal(size=d)), float(rng.normal())),
            client_params=tuple(
                _params(list(rng.normal(size=d)), float(rng.normal())) for _ in range(n_clients)
            ),
            client_num_examples=tuple(int(n) for n in rng.integers(1, 100, size=n_clients)),
            metrics={"fed/test_accuracy": float(rng.random()), "fed/client_0/train_loss": -0.0},
        )
        for r in range(n_rounds)
    )
    return FederationResult(initial_params=_params([0.0] * d, 0.0), rounds=rounds)


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def assert_params_identical(got: Params, want: Params) -> None:
    """Same names in the same order; each a C-contiguous float64 array with the same bits."""
    assert isinstance(got, dict)
    assert list(got) == list(want)
    for name, w in want.items():
        g = got[name]
        assert isinstance(g, np.ndarray), name
        assert g.dtype == np.float64, name
        assert g.flags.c_contiguous, name
        assert g.shape == np.shape(w), name
        assert g.tobytes() == np.asarray(w, dtype=np.float64).tobytes(), name


def assert_identical(got: FederationResult | None, want: FederationResult) -> None:
    """Bit-for-bit equality (dataclass == cannot compare arrays, and NaN != NaN)."""
    assert got is not None
    assert isinstance(got.rounds, tuple)
    assert_params_identical(got.initial_params, want.initial_params)
    assert len(got.rounds) == len(want.rounds)
    for g, w in zip(got.rounds, want.rounds, strict=True):
        assert type(g.round) is int and g.round == w.round
        assert_params_identical(g.global_params, w.global_params)
        assert isinstance(g.client_params, tuple)
        assert len(g.client_params) == len(w.client_params)
        for gp, wp in zip(g.client_params, w.client_params, strict=True):
            assert_params_identical(gp, wp)
        assert isinstance(g.client_num_examples, tuple)
        assert all(type(n) is int for n in g.client_num_examples)
        assert g.client_num_examples == w.client_num_examples
        assert list(g.metrics) == list(w.metrics)
        assert all(type(v) is float for v in g.metrics.values())
        assert [_bits(v) for v in g.metrics.values()] == [_bits(v) for v in w.metrics.values()]


# --- round trip -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_rounds", "n_clients", "d"), [(3, 2, 4), (0, 0, 5), (1, 0, 0), (2, 3, 0)]
)
def test_round_trip(tmp_path: Path, n_rounds: int, n_clients: int, d: int) -> None:
    cache = TrainingCache(tmp_path / "cache")
    result = make_result(n_rounds, n_clients, d)
    cache.store(KEY, result)
    assert cache.path(KEY) == tmp_path / "cache" / f"{KEY}.npz"
    assert_identical(cache.load(KEY), result)


def test_round_trip_of_another_models_arrays(tmp_path: Path) -> None:
    # The cache stores any model's named arrays, in the model's order: here the MLP's.
    model = MLP(hidden_units=3)
    rng = np.random.default_rng(4)

    def params() -> Params:
        return {k: v + rng.normal(size=v.shape) for k, v in model.init_params(5, 0).items()}

    result = FederationResult(
        initial_params=model.init_params(5, 0),
        rounds=tuple(
            RoundRecord(r, params(), (params(), params()), (7, 9), {"fed/test_loss": 0.5 / r})
            for r in (1, 2)
        ),
    )
    assert list(result.initial_params) == ["W1", "b1", "W2", "b2"]
    cache = TrainingCache(tmp_path)
    cache.store(KEY, result)
    assert_identical(cache.load(KEY), result)
    with np.load(cache.path(KEY), allow_pickle=False) as npz:
        assert npz["client/W1"].shape == (2, 2, 5, 3) and npz["global/b2"].shape == (2, 1)


floats = st.floats(width=64, allow_nan=True, allow_infinity=True) | st.sampled_from(
    [-0.0, 0.0, 1e308, -1e308, 5e-324, -5e-324]
)
# Parameters are finite (non-finite ones are never cached: see the test below); metrics may not be.
finite = st.floats(width=64, allow_nan=False, allow_infinity=False) | st.sampled_from(
    [-0.0, 0.0, 1e308, -1e308, 5e-324, -5e-324]
)


@st.composite
def federation_results(draw: st.DrawFn) -> FederationResult:
    """Any model's parameters: named float64 arrays of any shape (scalars and empty too)."""
    n_rounds = draw(st.integers(0, 3))
    n_clients = draw(st.integers(0, 3))
    names = draw(st.lists(st.text(max_size=8), unique=True, max_size=3))
    layout = draw(
        st.lists(
            st.tuples(
                st.text("abcXYZ_019", min_size=1, max_size=6),
                st.lists(st.integers(0, 3), max_size=3).map(tuple),
            ),
            min_size=1,
            max_size=4,
            unique_by=lambda entry: entry[0],
        )
    )

    def params() -> Params:
        out: Params = {}
        for name, shape in layout:
            size = int(np.prod(shape))
            values = draw(st.lists(finite, min_size=size, max_size=size))
            out[name] = np.array(values, dtype=np.float64).reshape(shape)
        return out

    initial = params()
    rounds = tuple(
        RoundRecord(
            round=draw(st.integers(-(2**63), 2**63 - 1)),
            global_params=params(),
            client_params=tuple(params() for _ in range(n_clients)),
            client_num_examples=tuple(
                draw(st.lists(st.integers(0, 2**62), min_size=n_clients, max_size=n_clients))
            ),
            metrics={name: draw(floats) for name in names},
        )
        for _ in range(n_rounds)
    )
    return FederationResult(initial_params=initial, rounds=rounds)


@settings(max_examples=60, deadline=None)
@given(result=federation_results())
def test_round_trip_property(result: FederationResult) -> None:
    with tempfile.TemporaryDirectory() as directory:
        cache = TrainingCache(Path(directory))
        cache.store(KEY, result)
        assert_identical(cache.load(KEY), result)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_parameters_are_never_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: float
) -> None:
    result = make_result(2)
    result.rounds[1].client_params[0]["coef"][1] = bad
    cache = TrainingCache(tmp_path)
    cache.store(KEY, result)
    assert not cache.path(KEY).exists()
    assert "non-finite" in caplog.text
    # An entry damaged that way on disk is a miss (retrained), not a failure of every later run.
    good = make_result(2)
    cache.store(KEY, good)
    with np.load(cache.path(KEY)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["global/coef"][0, 0] = np.nan
    np.savez(cache.path(KEY), **arrays)
    assert cache.load(KEY) is None
    assert "non-finite parameters" in caplog.text


def test_an_unusable_cache_directory_is_not_called_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert TrainingCache(blocker / "cache").load(KEY) is None
    assert "cannot be read" in caplog.text and "cache_dir" in caplog.text
    assert "corrupt" not in caplog.text


def test_store_overwrites_and_leaves_no_temp_files(tmp_path: Path) -> None:
    cache = TrainingCache(tmp_path)
    cache.store(KEY, make_result(1))
    cache.store(KEY, make_result(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{KEY}.npz"]
    assert_identical(cache.load(KEY), make_result(2))


def test_loaded_entry_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = TrainingCache(tmp_path)
    cache.store(KEY, make_result())
    with caplog.at_level(logging.WARNING, logger="fedgen"):
        assert cache.load(KEY) is not None
        assert cache.load(OTHER_KEY) is None
    assert caplog.records == []


# --- key --------------------------------------------------------------------------------------

MATERIAL: dict[str, Any] = {
    "dataset": {"n_snps": 20, "name": "synthetic", "maf": [0.05, 0.5]},
    "federation": {"num_clients": 3, "num_rounds": 5},
    "model": {"lr": 0.1, "penalty": None, "fit_intercept": True},
    "seed": 0,
    "version": "0.1.0",
}


def _arrays() -> list[NDArray[Any]]:
    rng = np.random.default_rng(1)
    genotypes = rng.integers(0, 3, size=(6, 4)).astype(np.int8)
    labels = rng.integers(0, 2, size=6).astype(np.int8)
    return [genotypes, labels, np.arange(3, dtype=np.int64), np.arange(3, 6, dtype=np.int64)]


def test_key_is_deterministic_hex() -> None:
    key = training_key(MATERIAL, _arrays())
    assert key == training_key(dict(MATERIAL), [a.copy() for a in _arrays()])
    assert len(key) == 64 and all(ch in "0123456789abcdef" for ch in key)


def test_key_ignores_dict_order_and_memory_layout() -> None:
    reordered = {k: MATERIAL[k] for k in reversed(MATERIAL)}
    reordered["dataset"] = {k: MATERIAL["dataset"][k] for k in reversed(MATERIAL["dataset"])}
    arrays = _arrays()
    fortran = [np.asfortranarray(arrays[0]), *arrays[1:]]
    assert training_key(reordered, fortran) == training_key(MATERIAL, arrays)


def _changed_material() -> list[dict[str, Any]]:
    variants = []
    for path, value in [
        (("seed",), 1),
        (("version",), "0.1.1"),
        (("dataset", "n_snps"), 21),
        (("dataset", "maf"), [0.05, 0.4]),
        (("model", "lr"), 0.1000000001),
        (("model", "penalty"), "l2"),
        (("model", "fit_intercept"), 1),
        (("federation", "num_rounds"), "5"),
    ]:
        material = {k: dict(v) if isinstance(v, dict) else v for k, v in MATERIAL.items()}
        target = material
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        variants.append(material)
    variants.append({**MATERIAL, "extra": None})
    return variants


@pytest.mark.parametrize("material", _changed_material())
def test_key_changes_with_any_material_value(material: dict[str, Any]) -> None:
    assert training_key(material, _arrays()) != training_key(MATERIAL, _arrays())


def _changed_arrays() -> list[list[NDArray[Any]]]:
    base = _arrays()
    flipped = base[0].copy()
    flipped.reshape(-1)[5] ^= 1
    return [
        [flipped, *base[1:]],  # one byte
        [base[0].view(np.uint8), *base[1:]],  # dtype, same bytes
        [base[0].reshape(4, 6), *base[1:]],  # shape, same bytes
        [base[0], base[1], base[3], base[2]],  # order of arrays
        [base[0], base[1], np.arange(6, dtype=np.int64)],  # same bytes, other framing
        base[:-1],  # one array fewer
        [*base, np.zeros(0, dtype=np.int64)],  # one empty array more
    ]


@pytest.mark.parametrize("arrays", _changed_arrays())
def test_key_changes_with_any_array_change(arrays: list[NDArray[Any]]) -> None:
    assert training_key(MATERIAL, arrays) != training_key(MATERIAL, _arrays())


def test_code_digest_covers_every_source_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uncached = code_digest.__wrapped__  # code_digest is computed once per process
    assert code_digest() == code_digest()
    digest = uncached()
    assert len(digest) == 64 and all(ch in "0123456789abcdef" for ch in digest)
    copy = tmp_path / "fedgen"
    shutil.copytree(Path(fedgen.__file__).resolve().parent, copy, symlinks=True)
    monkeypatch.setattr(fedgen, "__file__", str(copy / "__init__.py"))
    assert uncached() == digest  # the same files give the same digest, wherever they are
    seen = {digest}
    model = copy / "models" / "linear.py"
    model.write_text(model.read_text() + "\n")  # one byte more in one file
    seen.add(uncached())
    (copy / "models" / "other.py").write_text("")  # a new, empty module
    seen.add(uncached())
    (copy / "models" / "other.py").rename(copy / "models" / "renamed.py")
    seen.add(uncached())
    assert len(seen) == 4


def test_library_versions_are_the_installed_ones() -> None:
    import flwr
    import scipy
    import sklearn

    assert library_versions() == {
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "scipy": scipy.__version__,
        "flwr": flwr.__version__,
    }


# --- misses and corrupt entries ---------------------------------------------------------------


def _rewrite(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays: dict[str, Any] = {name: npz[name] for name in npz.files}
    change(arrays)
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


def _npy_bytes(array: NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class _Boom:
    """Unpickling this creates a marker directory: proof that the cache never unpickles."""

    marker = ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


def _object_array(path: Path) -> None:
    _Boom.marker = str(path.parent / "unpickled")
    _rewrite(path, lambda a: a.update(metrics=np.array([_Boom()], dtype=object)))


def _meta(text: bytes) -> Callable[[Path], object]:
    return lambda path: _rewrite(path, lambda a: a.update(meta=np.frombuffer(text, np.uint8)))


def _edit_meta(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], object]:
    """The entry's own meta JSON with one thing changed (everything else still valid)."""

    def edit(arrays: dict[str, Any]) -> None:
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
        change(meta)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)

    return lambda path: _rewrite(path, edit)


def _garbled_compressed(path: Path) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays: dict[str, Any] = {name: npz[name] for name in npz.files}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    data = bytearray(buffer.getvalue())
    for i in range(200, 260):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


CORRUPTIONS: dict[str, Callable[[Path], object]] = {
    "garbled_compressed": _garbled_compressed,
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "truncated_tail": lambda p: p.write_bytes(p.read_bytes()[:-30]),
    "random_bytes": lambda p: p.write_bytes(np.random.default_rng(2).bytes(4096)),
    "pickle_magic": lambda p: p.write_bytes(b"\x80\x04K\x01."),
    "plain_npy": lambda p: p.write_bytes(_npy_bytes(np.zeros(3))),
    "missing_array": lambda p: _rewrite(p, lambda a: a.pop("client/coef")),
    "missing_meta": lambda p: _rewrite(p, lambda a: a.pop("meta")),
    "object_array": _object_array,
    "wrong_dtype": lambda p: _rewrite(p, lambda a: a.update(metrics=a["metrics"].astype("f4"))),
    "big_endian": lambda p: _rewrite(p, lambda a: a.update(round=a["round"].astype(">i8"))),
    "wrong_shape": lambda p: _rewrite(
        p, lambda a: a.update({"client/coef": a["client/coef"][:, :1]})
    ),
    "wrong_ndim": lambda p: _rewrite(
        p, lambda a: a.update({"global/intercept": a["global/intercept"][:, 0]})
    ),
    "too_few_names": lambda p: _rewrite(p, lambda a: a.update(metrics=a["metrics"][:, :1])),
    "meta_not_json": _meta(b"{not json"),
    "meta_not_utf8": _meta(b"\xff\xfe"),
    "meta_not_object": _meta(b"[1, 2]"),
    "meta_format": _edit_meta(lambda m: m.update(format=FORMAT_VERSION - 1)),
    "meta_names": _edit_meta(lambda m: m.update(metric_names=[1, 2])),
    "meta_dup_names": _edit_meta(lambda m: m.update(metric_names=["a", "a"])),
}

# The reason each warning gives, where fedgen (not numpy or zipfile) finds the damage: proof
# that each case is caught by the check it is meant for.
REASONS = {
    "plain_npy": "not an npz archive",
    "missing_array": "missing array 'client/coef'",
    "missing_meta": "missing array 'meta'",
    "wrong_dtype": "'metrics' is float32 (3, 2), expected (3, 2)",
    "big_endian": "'round' is >i8 (3,), expected (3,)",
    "wrong_shape": "'client/coef' is float64 (3, 1, 4), expected (3, 2, 4)",
    "wrong_ndim": "'global/intercept' is float64 (3,), expected (3, 1)",
    "too_few_names": "'metrics' is float64 (3, 1), expected (3, 2)",
    "meta_not_object": f"meta is not a format-{FORMAT_VERSION} JSON object",
    "meta_format": f"meta is not a format-{FORMAT_VERSION} JSON object",
    "meta_names": "metric_names is not a list of strings",
    "meta_dup_names": "metric_names has duplicates",
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_entry_warns_then_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    corrupt = CORRUPTIONS[case]
    cache = TrainingCache(tmp_path)
    result = make_result()
    cache.store(KEY, result)
    corrupt(cache.path(KEY))
    with caplog.at_level(logging.WARNING, logger="fedgen"):
        assert cache.load(KEY) is None
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert str(cache.path(KEY)) in message and "is corrupt (" in message
    assert message.endswith("; retraining")
    if case in REASONS:
        assert f"is corrupt ({REASONS[case]})" in message
    assert not (tmp_path / "unpickled").exists()
    caplog.clear()
    cache.store(KEY, result)
    assert_identical(cache.load(KEY), result)
    assert caplog.records == []


def test_entry_copied_under_another_key_is_rejected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = TrainingCache(tmp_path)
    cache.store(KEY, make_result())
    shutil.copy(cache.path(KEY), cache.path(OTHER_KEY))
    with caplog.at_level(logging.WARNING, logger="fedgen"):
        assert cache.load(OTHER_KEY) is None
    assert len(caplog.records) == 1 and KEY in caplog.records[0].getMessage()
    assert cache.load(KEY) is not None


def test_miss_returns_none(tmp_path: Path) -> None:
    assert TrainingCache(tmp_path / "does-not-exist").load(KEY) is None


# --- failures to write ------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_store_into_read_only_directory_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        cache = TrainingCache(read_only)
        with caplog.at_level(logging.WARNING, logger="fedgen"):
            cache.store(KEY, make_result())
        assert list(read_only.iterdir()) == []
    finally:
        read_only.chmod(0o755)
    assert len(caplog.records) == 1 and "could not write cache entry" in caplog.text


def test_store_under_a_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="fedgen"):
        TrainingCache(blocker / "cache").store(KEY, make_result())
    assert len(caplog.records) == 1 and "could not write cache entry" in caplog.text


def test_store_of_ragged_result_warns_and_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = make_result(2, 2)
    ragged = FederationResult(
        good.initial_params,
        (good.rounds[0], RoundRecord(2, good.rounds[1].global_params, (), (), {})),
    )
    with caplog.at_level(logging.WARNING, logger="fedgen"):
        TrainingCache(tmp_path).store(KEY, ragged)
    assert len(caplog.records) == 1 and list(tmp_path.iterdir()) == []


# --- default directory ------------------------------------------------------------------------


def test_default_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FEDGEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "fedgen"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "fedgen"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "fedgen"
    monkeypatch.setenv("FEDGEN_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"


def test_store_permission_error_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: Path, data: bytes) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("fedgen.experiment.cache.atomic_write_bytes", refuse)
    with caplog.at_level(logging.WARNING, logger="fedgen"):
        TrainingCache(tmp_path).store(KEY, make_result())
    assert len(caplog.records) == 1 and "Permission denied" in caplog.text


def test_store_of_unstorable_metric_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = make_result(1)
    rec = good.rounds[0]
    metrics: dict[str, Any] = {"x": object()}
    bad = RoundRecord(1, rec.global_params, rec.client_params, rec.client_num_examples, metrics)
    with caplog.at_level(logging.WARNING, logger="fedgen"):
        TrainingCache(tmp_path).store(KEY, FederationResult(good.initial_params, (bad,)))
    assert len(caplog.records) == 1 and list(tmp_path.iterdir()) == []

"""A client's update as one flat vector: the plumbing shared by the client-side update mods.

A client's update is ``Delta = theta_client - theta_global`` over every named array of the
model, flattened in the record's order (the FlatClip convention of McMahan et al. 2018,
arXiv:1710.06963, which Flower's ``fixedclipping_mod`` and ``LocalDpMod`` also follow). An
update mod sees the global parameters the server sent and the parameters the train handler
(and any inner mod) returned, and may replace the latter before the reply leaves the client,
so the server, and fedgen's recorder, only ever receive its output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message
from numpy.typing import NDArray

from fedgen.core.errors import ConfigError

ARRAYS = "arrays"  # the ArrayRecord key of fedgen's train messages and replies

# (sent, returned, msg, context) -> the flat parameters to send instead, or None to send the
# reply untouched (so a defense that changes nothing is the identity bit for bit).
Transform = Callable[
    [NDArray[np.float64], NDArray[np.float64], Message, Context], NDArray[np.float64] | None
]


def update_mod(transform: Transform) -> Callable[[Message, Context, Any], Message]:
    """A Flower mod ``mod(msg, context, call_next)`` that rewrites the train reply's arrays.

    Parameters
    ----------
    transform : callable
        ``transform(sent, returned, msg, context)`` with ``sent`` the global parameters and
        ``returned`` the client's, both float64 (d,) in the reply's key order; it returns the
        parameters (d,) to send instead, or None to leave the reply as it is.
    """

    def mod(msg: Message, context: Context, call_next: Callable[..., Message]) -> Message:
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        got_record = reply.content.array_records[ARRAYS]
        sent_record = msg.content.array_records[ARRAYS]
        keys = list(got_record.keys())
        if sorted(keys) != sorted(sent_record.keys()):
            raise ValueError(
                f"the client returned arrays {keys}, the server sent {list(sent_record.keys())}"
            )
        got = [np.asarray(got_record[k].numpy(), dtype=np.float64) for k in keys]
        sent = np.concatenate([np.ravel(sent_record[k].numpy()).astype(np.float64) for k in keys])
        new = transform(sent, np.concatenate([np.ravel(a) for a in got]), msg, context)
        if new is None:
            return reply
        arrays, start = {}, 0
        for key, array in zip(keys, got, strict=True):
            part = new[start : start + array.size].reshape(array.shape)
            arrays[key] = Array(np.ascontiguousarray(part))
            start += array.size
        reply.content.array_records[ARRAYS] = ArrayRecord(arrays)
        return reply

    return mod


def config_number(
    defense: str, key: str, value: object, ok: Callable[[float], bool], requirement: str
) -> float:
    """``defense.<defense>.<key>`` as a float, or one ConfigError saying what it must be.

    ``requirement`` completes "must be ...", with the fix (e.g. ``"> 0 (e.g. 1.0)"``).
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok(float(value)):
        raise ConfigError(f"defense.{defense}.{key}={value!r} must be {requirement}")
    return float(value)

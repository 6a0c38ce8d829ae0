"""Client-side clipping: each client bounds the L2 norm of the update it sends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from flwr.app import Context, Message
from numpy.typing import NDArray

from fedgen.defenses.base import BaseDefense
from fedgen.defenses.update import config_number, update_mod


def clip_update(delta: NDArray[np.float64], clip_norm: float) -> NDArray[np.float64]:
    """``delta`` scaled by ``min(1, clip_norm / ||delta||_2)`` (FlatClip, McMahan et al. 2018).

    Returns ``delta`` itself (the same object) when its norm is already at most ``clip_norm``,
    which includes an all-zero update (Flower's ``clip_inputs_inplace`` divides by the norm
    there) and every update when ``clip_norm`` is infinite.

    Parameters
    ----------
    delta : ndarray of float64, shape (d,)
    clip_norm : float > 0 (inf allowed)
    """
    norm = float(np.linalg.norm(delta))
    if norm <= clip_norm:
        return delta
    return delta * (clip_norm / norm)


def check_clip_norm(defense: str, clip_norm: object) -> float:
    """Validate ``defense.<defense>.clip_norm``: a number > 0, ``inf`` allowed."""
    return config_number(
        defense,
        "clip_norm",
        clip_norm,
        lambda c: c > 0,
        "a number > 0, the L2 bound of each client's update (e.g. 1.0; .inf: no clipping)",
    )


class Clip(BaseDefense):
    """Each client clips its update to L2 norm at most ``clip_norm`` before sending it.

    Protects against: updates that carry more of one hospital's data than a norm bound allows
    (outlier clients, large early-round steps), as seen by the **server** that receives each
    update (fedgen's record, the ``observer=server`` attacks) and by everyone downstream of the
    aggregate. Clipping alone is not differential privacy: it bounds the sensitivity that a
    noise mechanism (:class:`~fedgen.defenses.ClientDP`, central DP) is calibrated to, and makes
    no privacy claim of its own (:meth:`account` returns None).

    Mechanism: with ``theta`` the global parameters the client received and ``theta_k`` the
    parameters it trained, the client sends ``theta + Delta min(1, C / ||Delta||_2)``, with
    ``Delta = theta_k - theta`` flattened over every named array (FlatClip of McMahan et al.
    2018, arXiv:1710.06963; Flower's ``fixedclipping_mod`` does the same but reads ``C`` from
    the server's config and fails on an all-zero update). An update already within the bound
    is sent untouched, so ``clip_norm=inf`` is the identity bit for bit.

    Parameters
    ----------
    name : str
        The defense's key in the ``defense`` group.
    clip_norm : float > 0 (inf allowed)
        ``C``, the L2 bound of each client's update.

    Raises
    ------
    ConfigError
        ``defense.<name>.clip_norm`` is not a number > 0.
    """

    def __init__(self, name: str = "clip", clip_norm: float = 1.0) -> None:
        super().__init__(name)
        self.clip_norm = check_clip_norm(name, clip_norm)

    def client_mods(self, seed: int) -> Sequence[Any]:
        clip_norm = self.clip_norm

        def clip(
            sent: NDArray[np.float64], got: NDArray[np.float64], msg: Message, context: Context
        ) -> NDArray[np.float64] | None:
            delta = got - sent
            clipped = clip_update(delta, clip_norm)
            return None if clipped is delta else sent + clipped

        return [update_mod(clip)]

"""The simulator's truth: the exact probability that a lead converts within a horizon, given
the state of its latent process at as_of (see `simulator.funnel` for the process).

A lead waits for its buying stage (entry after a lognormal delay, with probability p_stage) while
it may be closed as lost (after an independent lognormal delay, with probability p_close_lost);
once in the stage, its project converts at rate convert_rate or dies at rate drop_rate. The state
at as_of is one of: waiting (open, no project yet), in a live project since some day, in a dead
project, or closed. Only waiting needs an integral, over the entry time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import ndtr, ndtri

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# One time or one per lead: a Timestamp/datetime, a datetime Series/Index, or an array of times.
TimesLike = datetime | Sequence[datetime] | pd.Series | pd.Index | npt.ArrayLike

SECONDS_PER_DAY: Final = 86_400
NS_PER_SECOND: Final = 1_000_000_000


@dataclass(frozen=True)
class StageParameters:
    """Per lead, the parameters of its latent process, as stored in the truth table."""

    p_stage: FloatArray
    stage_mu: FloatArray
    stage_sigma: FloatArray
    convert_rate: FloatArray
    drop_rate: FloatArray
    p_close_lost: FloatArray
    lost_delay_mu: FloatArray
    lost_delay_sigma: FloatArray

    def take(self, rows: slice | IntArray) -> StageParameters:
        return StageParameters(
            **{name: getattr(self, name)[rows] for name in self.__dataclass_fields__}
        )


# Gauss-Legendre nodes on [0, 1]: the integrand below is smooth in the entry quantile.
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(16)
_NODES, _WEIGHTS = (_NODES + 1.0) / 2.0, _WEIGHTS / 2.0
_CHUNK: Final = 1 << 16  # rows per chunk, to bound memory at (rows x nodes)


def lognormal_cdf(days: FloatArray, mu: FloatArray, sigma: FloatArray) -> FloatArray:
    positive = days > 0
    z = (np.log(np.where(positive, days, 1.0)) - mu) / sigma
    return np.where(positive, ndtr(z), 0.0)


def enter_and_convert(stage: StageParameters, begin: FloatArray, end: FloatArray) -> FloatArray:
    """P(the stage starts in [begin, end) before any early close, and the project converts
    before `end`), days since creation. Integrated over the entry time's quantile u, where the
    entry time is s(u) = exp(mu + sigma * ndtri(u)) and the entry density is p_stage du."""
    out = np.empty(begin.size)
    for lo in range(0, begin.size, _CHUNK):
        rows = slice(lo, lo + _CHUNK)
        st = stage.take(rows)
        b, e = begin[rows], end[rows]
        u0 = lognormal_cdf(b, st.stage_mu, st.stage_sigma)
        u1 = np.where(np.isinf(e), 1.0, lognormal_cdf(e, st.stage_mu, st.stage_sigma))
        u = u0[:, None] + (u1 - u0)[:, None] * _NODES
        entry = np.exp(st.stage_mu[:, None] + st.stage_sigma[:, None] * ndtri(u))
        not_closed = 1.0 - st.p_close_lost[:, None] * lognormal_cdf(
            entry, st.lost_delay_mu[:, None], st.lost_delay_sigma[:, None]
        )
        total = st.convert_rate + st.drop_rate
        with np.errstate(invalid="ignore"):  # inf - inf when the end is never
            lands = -np.expm1(-total[:, None] * (e[:, None] - entry))
        lands = np.where(np.isinf(e)[:, None], 1.0, lands)
        landing_share = st.convert_rate / total
        # A row-wise sum (not a matrix product) so a lead gets the same bits in any batch.
        integral = (not_closed * lands * _WEIGHTS).sum(axis=1)
        out[rows] = st.p_stage * (u1 - u0) * landing_share * integral
    return out


def true_conversion_probability(
    truth: pd.DataFrame,
    lead_ids: npt.ArrayLike,
    as_of: TimesLike,
    horizon_days: int,
    *,
    given_open: bool = False,
) -> FloatArray:
    """The true probability that each lead converts in [as_of, as_of + horizon_days).

    `as_of` is one time or one per lead; naive times are read as UTC. NaN where as_of is missing.

    With `given_open`, the probability given everything the simulator knows at as_of: the state
    of the lead's latent process then (not yet in a buying project, in a live one since some
    day, or in one that died), for a lead still open at as_of. This is the best any model
    scoring open leads can do. Leads already closed at as_of get 0.

    Without it, the probability given only what is known at creation (the lead's latents) and
    that it has not converted before as_of.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    ids = np.asarray(lead_ids, dtype=np.int64).reshape(-1)
    position: IntArray = pd.Index(truth["lead_id"]).get_indexer(ids).astype(np.int64)
    if (position < 0).any():
        missing = ids[position < 0][:5].tolist()
        raise KeyError(f"lead_id not in truth: {missing}")

    as_of_ns = _utc_nanoseconds(as_of, ids.size)
    created_ns = _utc_nanoseconds(truth["created_at"], len(truth))[position]
    missing_as_of = as_of_ns == np.iinfo(np.int64).min
    elapsed = np.where(
        missing_as_of, 0.0, (as_of_ns - created_ns) / (SECONDS_PER_DAY * NS_PER_SECOND)
    )
    elapsed = np.clip(elapsed, 0.0, None)  # before creation, nothing has happened yet

    def latent(name: str) -> FloatArray:
        values: FloatArray = truth[name].to_numpy(dtype=np.float64)
        return values[position]

    stage = StageParameters(**{name: latent(name) for name in StageParameters.__dataclass_fields__})
    end = elapsed + horizon_days
    if not given_open:
        before = enter_and_convert(stage, np.zeros(ids.size), elapsed)
        by_end = enter_and_convert(stage, np.zeros(ids.size), end)
        result = (by_end - before) / (1.0 - before)
    else:
        entered = latent("stage_days") <= elapsed
        live = entered & (latent("stage_end_days") > elapsed)
        closed = latent("closed_days") <= elapsed
        total = stage.convert_rate + stage.drop_rate
        in_stage = stage.convert_rate / total * -np.expm1(-total * horizon_days)
        # Not yet in a project and open: the entry density after as_of, given neither the
        # project nor an early close came before it.
        still_waiting = (
            1.0 - stage.p_stage * lognormal_cdf(elapsed, stage.stage_mu, stage.stage_sigma)
        ) * (
            1.0
            - stage.p_close_lost
            * lognormal_cdf(elapsed, stage.lost_delay_mu, stage.lost_delay_sigma)
        )
        waiting = np.flatnonzero(~entered & ~closed)
        before_stage = np.zeros(ids.size)
        before_stage[waiting] = (
            enter_and_convert(stage.take(waiting), elapsed[waiting], end[waiting])
            / still_waiting[waiting]
        )
        result = np.where(closed, 0.0, np.where(live, in_stage, before_stage))
    return np.where(missing_as_of, np.nan, result)


def _utc_nanoseconds(values: object, n: int) -> IntArray:
    """Nanoseconds since the epoch (UTC) of one time, broadcast to n, or of n times."""
    if isinstance(values, pd.Series | pd.Index):
        converted = pd.to_datetime(values, utc=True)
    else:
        converted = pd.to_datetime(values, utc=True)  # type: ignore[call-overload]
    if isinstance(converted, pd.Timestamp):
        return np.full(n, converted.as_unit("ns").value, dtype=np.int64)
    index = pd.DatetimeIndex(converted).as_unit("ns").tz_localize(None)
    nanoseconds = index.to_numpy().view(np.int64)
    if nanoseconds.size != n:
        raise ValueError(f"expected one as_of or {n}, got {nanoseconds.size}")
    return nanoseconds

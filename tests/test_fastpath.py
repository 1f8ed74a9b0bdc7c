"""The API's single-lead path gives exactly the batch path's answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.pointintime import as_utc_ns
from models.fastpath import FastLeadScorer, LeadEvents
from models.scorer import LeadScorer
from tests.conftest import trained_scorer


@pytest.fixture(scope="module")
def scored_world() -> tuple[LeadScorer, pd.DataFrame, pd.DataFrame]:
    funnel, scorer = trained_scorer(8_000, seed=31)
    leads = funnel.leads.sample(400, random_state=1).reset_index(drop=True)
    # What real requests bring: missing and unseen values, unknown event types.
    leads["job_title"] = leads["job_title"].astype(object)
    leads.loc[0:9, "job_title"] = None
    leads.loc[10:19, "email"] = None
    leads.loc[20:24, "email"] = "no-at-sign"
    leads["industry"] = leads["industry"].astype(object)
    leads.loc[25:34, "industry"] = "space tourism"
    leads.loc[35:39, "industry"] = None
    events = funnel.events[funnel.events["lead_id"].isin(leads["lead_id"])].copy()
    events["event_type"] = events["event_type"].astype(object)
    events.loc[events.index[::50], "event_type"] = "chat_started"
    return scorer, leads, events


def test_single_lead_path_equals_batch_path(
    scored_world: tuple[LeadScorer, pd.DataFrame, pd.DataFrame],
) -> None:
    scorer, leads, events = scored_world
    rng = np.random.default_rng(0)
    as_of = leads["created_at"] + pd.to_timedelta(rng.integers(0, 150 * 24, len(leads)), unit="h")
    spine = pd.DataFrame({"lead_id": leads["lead_id"], "as_of": as_of.dt.as_unit("ns")})
    typed = events.assign(event_type=pd.Categorical(events["event_type"]))
    batch = scorer.score_snapshots(spine, leads, typed)

    fast = FastLeadScorer(scorer)
    by_lead = {lead_id: group for lead_id, group in events.groupby("lead_id")}
    answers = []
    for lead, moment in zip(leads.to_dict("records"), as_of, strict=True):
        mine = by_lead.get(lead["lead_id"], events.iloc[:0])
        lead_events = LeadEvents(ts=as_utc_ns(mine["ts"]), kinds=list(mine["event_type"]))
        answers.append(fast.score(lead, lead_events, moment))
    single = pd.DataFrame(answers)

    np.testing.assert_allclose(single["probability"], batch["probability"], rtol=1e-9)
    np.testing.assert_allclose(single["rule_score"], batch["rule_score"], rtol=1e-9, atol=1e-9)
    assert single["tier"].tolist() == batch["tier"].tolist()
    assert single["mql"].tolist() == batch["mql"].tolist()
    assert single["rule_mql"].tolist() == batch["rule_mql"].tolist()
    for mine, theirs in zip(single["reasons"], batch["reasons"], strict=True):
        for side in ("for", "against"):
            assert [r["phrase"] for r in mine[side]] == [r["phrase"] for r in theirs[side]]
            np.testing.assert_allclose(
                [r["contribution"] for r in mine[side]],
                [r["contribution"] for r in theirs[side]],
                rtol=1e-9,
            )
    assert batch["mql"].any() and batch["rule_mql"].any()

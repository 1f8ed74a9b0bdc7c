"""A realistic scored, labelled lead frame for the comparison tests (page, CSV, API /compare).

Shaped like `LeadScorer.score` output (models/scorer.py SCORE_COLUMNS) plus the outcome and a
source column: the model's probability tracks the true chance of converting closely, the rules'
points only loosely, so the model's list should convert clearly better at equal volume.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SOURCES = {  # name: (share of leads, how much it shifts the chance of converting, in log-odds)
    "Google Ads": (0.28, 0.0),
    "Organic Search": (0.22, 0.2),
    "Webinar": (0.14, 0.6),
    "Referral": (0.10, 1.0),
    "LinkedIn": (0.12, -0.3),
    "Trade Show": (0.06, 0.4),
    "Purchased List": (0.08, -1.2),
}
# What one lead from each source costs, for the cost-per-MQL figures (Referral is free).
COST_PER_LEAD = {
    "Google Ads": 42.0,
    "Organic Search": 8.0,
    "Webinar": 55.0,
    "Referral": 0.0,
    "LinkedIn": 65.0,
    "Trade Show": 120.0,
    "Purchased List": 3.0,
}
TIER_SHARES = {"A": 0.05, "B": 0.15, "C": 0.40}  # cumulative, as the policy's defaults
RULES_THRESHOLD = 60.0
MODEL_VERSION = "7"

_FOR = [
    ("pricing_page_views", "viewed the pricing page 3 times in the last 2 weeks"),
    ("demo_request", "requested a demo"),
    ("seniority", "is a director"),
    ("webinar_attended", "attended a webinar"),
    ("company_email", "uses a company email address"),
]
_AGAINST = [
    ("days_since_activity", "no activity for 40 days"),
    ("email_domain", "uses a free email address"),
    ("job_function", "works in a student role"),
    ("unsubscribe", "unsubscribed from emails"),
]


def _reasons(rng: np.random.Generator, strength: float) -> dict[str, list[dict[str, object]]]:
    n_for = int(np.clip(round(1 + 2 * strength), 0, 3))
    n_against = 3 - n_for
    pick_for = rng.choice(len(_FOR), n_for, replace=False)
    pick_against = rng.choice(len(_AGAINST), n_against, replace=False)
    return {
        "for": [
            {"feature": _FOR[i][0], "phrase": _FOR[i][1], "contribution": round(0.9 - 0.2 * k, 2)}
            for k, i in enumerate(pick_for)
        ],
        "against": [
            {
                "feature": _AGAINST[i][0],
                "phrase": _AGAINST[i][1],
                "contribution": round(-0.7 + 0.2 * k, 2),
            }
            for k, i in enumerate(pick_against)
        ],
    }


def example_scored_leads(
    n: int = 2_000, seed: int = 11, source_column: str = "lead_source"
) -> pd.DataFrame:
    """`n` scored leads with outcomes: lead_id, as_of, probability, mql, tier, threshold,
    rule_score, rule_mql, reasons, model_version, converted and `source_column`."""
    rng = np.random.default_rng(seed)
    names = list(SOURCES)
    shares = np.array([SOURCES[s][0] for s in names])
    source = rng.choice(names, n, p=shares / shares.sum())
    shift = np.array([SOURCES[s][1] for s in source])
    interest = rng.normal(size=n)
    truth = 1 / (1 + np.exp(-(-2.4 + 1.3 * interest + shift)))
    converted = rng.binomial(1, truth)
    # The model sees most of what matters; its probabilities are close to the truth.
    probability = 1 / (1 + np.exp(-(np.log(truth / (1 - truth)) + rng.normal(0, 0.35, n))))
    probability = np.round(probability, 4)
    ordered = np.sort(probability)[::-1]
    floors = {t: float(ordered[max(0, round(s * n) - 1)]) for t, s in TIER_SHARES.items()}
    tier = np.full(n, "D", dtype=object)
    for name in reversed(list(floors)):
        tier[probability >= floors[name]] = name
    threshold = floors["B"]
    # Points: engagement counts loosely, in steps of 5, with a lot that is not about buying.
    rule_score = np.clip(5 * np.round((38 + 11 * interest + rng.normal(0, 16, n)) / 5), -20, 160)
    as_of = pd.Timestamp("2024-04-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 90 * 24, n), unit="h"
    )
    return pd.DataFrame(
        {
            "lead_id": np.arange(100_001, 100_001 + n, dtype=np.int64),
            "as_of": as_of,
            "probability": probability,
            "mql": probability >= threshold,
            "tier": tier,
            "threshold": threshold,
            "rule_score": rule_score,
            "rule_mql": rule_score >= RULES_THRESHOLD,
            "reasons": [_reasons(rng, float(p) * 4) for p in probability],
            "model_version": MODEL_VERSION,
            "converted": converted,
            source_column: source,
        }
    )

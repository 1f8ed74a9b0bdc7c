"""Model list vs rules list: the numbers on a hand-checked frame, edge cases, page, CSV, files.

Expected values are worked out by hand (in the comments) or with plain pandas, never with the
module's own helpers; the page's numbers for a filter are checked against
`compare_model_and_rules` run on that filter's leads.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.reports.comparison import (
    ALL_LEADS_FILE,
    HTML_FILE,
    JSON_FILE,
    MODEL_LIST_FILE,
    MODEL_TOP_N_FILE,
    RULES_LIST_FILE,
    Comparison,
    Group,
    ListComparison,
    charts,
    compare_model_and_rules,
    compare_within,
    comparison_html,
    csv_lists,
    headline,
    leads_csv,
    page_data,
    verdict,
    write_comparison,
)
from models.reports.evaluation import RULES_BASIS
from tests.browser import elements_by_id
from tests.compare_fixtures import COST_PER_LEAD, RULES_THRESHOLD, example_scored_leads

pytestmark = pytest.mark.filterwarnings("error")


def reasons(*phrases: str, against: str | None = None) -> dict[str, list[dict[str, object]]]:
    return {
        "for": [
            {"feature": f"f{i}", "phrase": p, "contribution": 0.5} for i, p in enumerate(phrases)
        ],
        "against": ([{"feature": "g", "phrase": against, "contribution": -0.4}] if against else []),
    }


def ten_leads() -> pd.DataFrame:
    """Ten leads, in scrambled row order; every expected number below is counted from this table.

    id  prob  mql  tier  points  rule_mql  converted  source
     1  0.90   T    A      70       T          1      Google
     2  0.80   T    A      20       F          1      Google
     3  0.70   T    B      65       T          0      Webinar
     4  0.60   T    B      10       F          1      Webinar
     5  0.50   T    C      90       T          0      Google
     6  0.40   F    C      30       F          0      Referral
     7  0.30   F    C      40       F          1      Referral
     8  0.20   F    D      50       F          0      (missing)
     9  0.10   F    D       5       F          0      Google
    10  0.05   F    D      60       T          0      Webinar
    """
    frame = pd.DataFrame(
        {
            "lead_id": range(1, 11),
            "probability": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05],
            "tier": list("AABBCCCDDD"),
            "threshold": 0.5,
            "rule_score": [70.0, 20, 65, 10, 90, 30, 40, 50, 5, 60],
            "converted": [1, 1, 0, 1, 0, 0, 1, 0, 0, 0],
            "Lead Source": [
                "Google",
                "Google",
                "Webinar",
                "Webinar",
                "Google",
                "Referral",
                "Referral",
                None,
                "Google",
                "Webinar",
            ],
            "reasons": [reasons("requested a demo", "viewed pricing", against="no reply")]
            + [None] * 9,
            "model_version": "3",
        }
    )
    frame["mql"] = frame["probability"] >= 0.5
    frame["rule_mql"] = frame["rule_score"] >= 60
    return frame.sample(frac=1.0, random_state=4).reset_index(drop=True)


def assert_group(group: Group, leads: int, converted: int, rate: float, lift: float) -> None:
    assert (group.leads, group.converted) == (leads, converted)
    for got, want in ((group.conversion_rate, rate), (group.lift, lift)):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)


@pytest.fixture
def ten() -> Comparison:
    return compare_model_and_rules(
        ten_leads(),
        source="Lead Source",
        cost_per_lead={"Google": 10, "Webinar": 50, "Referral": 0},
    )


# --- the numbers ------------------------------------------------------------------------------


def test_equal_volume_lists(ten: Comparison) -> None:
    # Rules MQLs {1, 3, 5, 10}: N = 4, one converted. Model top 4: {1, 2, 3, 4}, three converted.
    # Base rate 4 / 10 (leads 1, 2, 4, 7).
    assert (ten.n_leads, ten.converted, ten.base_rate, ten.equal_volume_n) == (10, 4, 0.4, 4)
    ev = ten.equal_volume
    assert_group(ev.model, 4, 3, 0.75, 0.75 / 0.4)
    assert_group(ev.rules, 4, 1, 0.25, 0.25 / 0.4)
    assert_group(ev.both, 2, 1, 0.5, 0.5 / 0.4)  # {1, 3}
    assert_group(ev.model_only, 2, 2, 1.0, 2.5)  # {2, 4}
    assert_group(ev.rules_only, 2, 0, 0.0, 0.0)  # {5, 10}
    assert_group(ev.neither, 4, 1, 0.25, 0.625)  # {6, 7, 8, 9}
    assert ev.overlap_share == pytest.approx(2 / 6)
    assert ev.conversion_ratio == pytest.approx(3.0)
    assert ev.extra_converted == 2


def test_own_threshold_lists(ten: Comparison) -> None:
    # Model MQLs (p >= 0.5): {1, 2, 3, 4, 5}, three converted; rules as before.
    own = ten.own_threshold
    assert_group(own.model, 5, 3, 0.6, 1.5)
    assert_group(own.rules, 4, 1, 0.25, 0.625)
    assert_group(own.both, 3, 1, 1 / 3, (1 / 3) / 0.4)  # {1, 3, 5}
    assert_group(own.model_only, 2, 2, 1.0, 2.5)  # {2, 4}
    assert_group(own.rules_only, 1, 0, 0.0, 0.0)  # {10}
    assert own.overlap_share == pytest.approx(3 / 6)
    assert own.conversion_ratio == pytest.approx(0.6 / 0.25)
    assert own.extra_converted == 2
    assert ten.model_threshold == 0.5 and ten.model_version == "3"


def test_deciles(ten: Comparison) -> None:
    # Ten distinct scores: decile i is the i-th best lead.
    model_y = [1, 1, 0, 1, 0, 0, 1, 0, 0, 0]  # by probability: leads 1..10
    rules_y = [0, 1, 0, 0, 0, 1, 0, 1, 1, 0]  # by points: leads 5, 1, 3, 10, 8, 7, 6, 2, 4, 9
    for rows, ys in ((ten.deciles_model, model_y), (ten.deciles_rules, rules_y)):
        assert [r.decile for r in rows] == list(range(1, 11))
        assert [r.leads for r in rows] == [1] * 10
        assert [r.converted for r in rows] == ys
        assert [r.lift for r in rows] == pytest.approx([y / 0.4 for y in ys])
        assert [r.cumulative_capture for r in rows] == pytest.approx(list(np.cumsum(ys) / 4))
    assert ten.deciles_rules[0].min_score == 90.0


def test_score_bands(ten: Comparison) -> None:
    tiers = {r.band: (r.leads, r.converted) for r in ten.by_tier}
    assert tiers == {"A": (2, 2), "B": (2, 1), "C": (3, 1), "D": (3, 0)}
    assert [r.conversion_rate for r in ten.by_tier] == pytest.approx([1.0, 0.5, 1 / 3, 0.0])
    # Threshold read off the rules' MQLs: 60, so bands at 30, 60 and 120 points.
    assert ten.rules_threshold == 60.0
    bands = [(r.band, r.leads, r.converted) for r in ten.by_rule_band]
    assert bands == [
        ("under 30", 3, 2),  # leads 2, 4, 9
        ("30 to under 60", 3, 1),  # leads 6, 7, 8
        ("60 to under 120 (rules MQL)", 4, 1),  # leads 1, 3, 5, 10
        ("120 or more (rules MQL)", 0, 0),
    ]
    assert math.isnan(ten.by_rule_band[-1].conversion_rate)
    assert sum(r.share_of_leads for r in ten.by_rule_band) == pytest.approx(1.0)


def test_by_source(ten: Comparison) -> None:
    rows = {r.source: r for r in ten.by_source}
    assert [r.source for r in ten.by_source] == ["Google", "Webinar", "Referral", "(missing)"]
    google = rows["Google"]  # leads 1, 2, 5, 9
    assert (google.leads, google.converted) == (4, 2)
    assert (google.rules_mqls, google.rules_converted) == (2, 1)  # 1, 5
    assert (google.model_mqls, google.model_converted) == (2, 2)  # 1, 2
    assert (google.model_own_mqls, google.model_own_converted) == (3, 2)  # 1, 2, 5
    webinar = rows["Webinar"]  # leads 3, 4, 10
    assert (webinar.rules_mqls, webinar.rules_converted, webinar.model_mqls) == (2, 0, 2)
    assert rows["Referral"].rules_mqls == 0 and rows["(missing)"].leads == 1


def test_costs(ten: Comparison) -> None:
    # Google 4 x 10 + Webinar 3 x 50 + Referral 0; the lead without a source has no cost.
    costs = ten.costs
    assert costs is not None
    assert costs.total_spend == 190.0 and costs.leads_without_cost == 1
    ev = costs.model_equal_volume  # leads 1, 2 (Google), 3, 4 (Webinar)
    assert (ev.mqls, ev.converted_mqls, ev.list_spend) == (4, 3, 120.0)
    assert ev.cost_per_mql == pytest.approx(190 / 4)
    assert ev.cost_per_converted_mql == pytest.approx(190 / 3)
    own = costs.model_own_threshold  # + lead 5 (Google)
    assert (own.mqls, own.list_spend) == (5, 130.0)
    assert own.cost_per_mql == pytest.approx(38.0)
    rules = costs.rules  # leads 1, 5 (Google), 3, 10 (Webinar)
    assert rules.list_spend == 120.0
    assert rules.cost_per_converted_mql == pytest.approx(190.0)
    by_source = {r.source: r for r in ten.by_source}
    assert by_source["Webinar"].spend == 150.0
    assert by_source["Webinar"].rules_cost_per_mql == pytest.approx(75.0)
    assert math.isnan(by_source["Referral"].rules_cost_per_mql or 0.0)


def test_cost_column_with_gaps() -> None:
    frame = ten_leads()
    frame["cost"] = frame["lead_id"].astype(float)
    frame.loc[frame["lead_id"] == 10, "cost"] = np.nan
    c = compare_model_and_rules(frame, cost_column="cost")
    assert c.costs is not None
    assert c.costs.total_spend == sum(range(1, 10)) and c.costs.leads_without_cost == 1
    assert c.costs.rules.list_spend == 1 + 3 + 5  # lead 10's cost is unknown, counted as 0


def test_ties_go_to_the_lower_lead_id_whatever_the_row_order() -> None:
    rows = []
    for order in ([30, 10, 20, 40], [40, 20, 10, 30]):
        frame = pd.DataFrame(
            {
                "lead_id": order,
                "probability": [0.5, 0.5, 0.5, 0.1],
                "mql": True,
                "tier": "B",
                "rule_score": [1.0, 2.0, 3.0, 4.0],
                "converted": [1, 0, 0, 1],
            }
        )
        frame["probability"] = np.where(frame["lead_id"] == 40, 0.1, 0.5)
        frame["rule_mql"] = frame["lead_id"].isin([30, 40])
        leads = compare_model_and_rules(frame).leads
        rows.append(leads.loc[leads["model_top_n"], "lead_id"].tolist())
    assert rows == [[10, 20], [10, 20]]


def test_matches_plain_pandas_on_a_realistic_frame() -> None:
    frame = example_scored_leads(n=600, seed=5)
    c = compare_model_and_rules(frame, source="lead_source")
    n = int(frame["rule_mql"].sum())
    top = frame.sort_values(["probability", "lead_id"], ascending=[False, True]).head(n)
    model = frame["lead_id"].isin(top["lead_id"])
    rules = frame["rule_mql"]
    assert c.equal_volume.model.converted == int(frame.loc[model, "converted"].sum())
    assert c.equal_volume.rules.converted == int(frame.loc[rules, "converted"].sum())
    assert c.equal_volume.both.leads == int((model & rules).sum())
    only = frame.loc[model & ~rules, "converted"]
    assert c.equal_volume.model_only.conversion_rate == pytest.approx(only.mean())
    assert c.own_threshold.model.leads == int(frame["mql"].sum())
    per_source = frame.groupby("lead_source")["converted"].agg(["size", "sum"])
    for row in c.by_source:
        assert (row.leads, row.converted) == tuple(per_source.loc[row.source])
    # The example's model is the better one, as it was built to be.
    assert c.equal_volume.conversion_ratio > 1.2


# --- edge cases -------------------------------------------------------------------------------


def test_no_rules_mqls() -> None:
    frame = ten_leads().assign(rule_mql=False)
    c = compare_model_and_rules(frame)
    assert c.equal_volume_n == 0 and c.rules_threshold is None
    assert_group(c.equal_volume.model, 0, 0, math.nan, math.nan)
    assert_group(c.equal_volume.rules, 0, 0, math.nan, math.nan)
    assert math.isnan(c.equal_volume.overlap_share)
    assert math.isnan(c.own_threshold.conversion_ratio)
    assert c.own_threshold.model.leads == 5
    assert len(c.by_rule_band) == 4  # quartiles of the points instead
    assert json.loads(c.to_json())["equal_volume"]["model"]["conversion_rate"] is None
    page = elements_by_id(comparison_html(c))
    assert "no-rules-mqls" in page
    assert page["model-rate"].text == "n/a" and page["model-rate"].attrs["data-value"] == ""


def test_all_converted() -> None:
    c = compare_model_and_rules(ten_leads().assign(converted=1))
    assert c.base_rate == 1.0
    assert_group(c.equal_volume.model, 4, 4, 1.0, 1.0)
    assert {r.lift for r in c.deciles_model} == {1.0}
    assert c.equal_volume.conversion_ratio == 1.0
    comparison_html(c)


def test_nobody_converted() -> None:
    c = compare_model_and_rules(ten_leads().assign(converted=0))
    assert c.base_rate == 0.0 and math.isnan(c.equal_volume.model.lift)
    assert all(math.isnan(r.cumulative_capture) for r in c.deciles_model)
    comparison_html(c)


def test_without_source_and_costs() -> None:
    c = compare_model_and_rules(ten_leads())
    assert c.by_source == () and c.costs is None and c.source_name is None
    assert "source" not in c.leads.columns
    page = comparison_html(c)
    assert 'id="filter-source"' not in page and 'id="source-table"' not in page


@pytest.mark.parametrize("n", [1, 0])
def test_one_lead_and_none(n: int) -> None:
    frame = ten_leads().head(n)
    c = compare_model_and_rules(frame, source="Lead Source")
    assert c.n_leads == n
    json.loads(c.to_json())
    page = elements_by_id(comparison_html(c))
    assert page["sel-leads"].attrs["data-value"] == str(n)


def test_leads_tied_at_the_models_threshold_are_counted_and_shown() -> None:
    # An isotonic step: leads 5, 6 and 7 share the threshold's probability, so all are MQL.
    frame = ten_leads()
    frame.loc[frame["lead_id"].isin([5, 6, 7]), "probability"] = 0.5
    frame["mql"] = frame["probability"] >= 0.5
    c = compare_model_and_rules(frame)
    assert c.model_ties_at_threshold == 3
    assert json.loads(c.to_json())["model_ties_at_threshold"] == 3
    found = elements_by_id(comparison_html(c))
    assert found["model-ties"].attrs["data-value"] == "3"
    assert "3 of these leads (30.0%) are exactly at the model's threshold" in " ".join(
        found["model-ties"].text.split()
    )
    # Without a threshold column: the leads at the weakest model MQL's probability.
    assert compare_model_and_rules(frame.drop(columns="threshold")).model_ties_at_threshold == 3
    no_list = compare_model_and_rules(frame.assign(mql=False).drop(columns="threshold"))
    assert no_list.model_ties_at_threshold is None
    assert 'id="model-ties"' not in comparison_html(no_list)


def test_the_rules_ranking_is_named_and_uses_their_calibrated_probability_when_given(
    ten: Comparison,
) -> None:
    assert ten.rules_ranked_by == "points"
    assert elements_by_id(comparison_html(ten))["rules-basis"].attrs["data-basis"] == "points"
    # The calibrated probability pools points 5-30 and 40-70 into two steps (the isotonic map).
    frame = ten_leads()
    frame["rule_probability"] = np.where(frame["rule_score"] >= 40, 0.3, 0.1)
    frame.loc[frame["rule_score"] == 90, "rule_probability"] = 0.5
    c = compare_model_and_rules(frame)
    assert c.rules_ranked_by == RULES_BASIS
    assert json.loads(c.to_json())["rules_ranked_by"] == "calibrated probability"
    assert [row.leads for row in c.deciles_rules if row.leads] == [1, 5, 4]
    assert [row.leads for row in ten.deciles_rules if row.leads] == [1] * 10
    page = comparison_html(c)
    assert elements_by_id(page)["rules-basis"].attrs["data-basis"] == RULES_BASIS
    assert "rules (by calibrated probability): leads" in page
    # The rules' list is still their points' own.
    assert c.own_threshold.rules == ten.own_threshold.rules


def test_reasons_as_text(ten: Comparison) -> None:
    lead = ten.leads.set_index("lead_id").loc[1]
    assert lead["reasons_for"] == "requested a demo; viewed pricing"
    assert lead["reasons_against"] == "no reply"
    frame = ten_leads()
    frame["reasons"] = frame["reasons"].map(lambda r: json.dumps(r) if r else None)
    again = compare_model_and_rules(frame).leads.set_index("lead_id")
    assert again.loc[1, "reasons_for"] == "requested a demo; viewed pricing"
    assert again.loc[2, "reasons_for"] == ""


def test_threshold_given_sets_the_bands() -> None:
    c = compare_model_and_rules(ten_leads(), rules_threshold=40)
    assert [r.band for r in c.by_rule_band] == [
        "under 20",
        "20 to under 40",
        "40 to under 80 (rules MQL)",
        "80 or more (rules MQL)",
    ]
    # Points 10, 5 | 20, 30 | 70, 65, 40, 50, 60 | 90: a lower edge belongs to the band above.
    assert [r.leads for r in c.by_rule_band] == [2, 2, 5, 1]


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (lambda f: f.drop(columns=["rule_score"]), {}, "'rule_score'"),
        (
            lambda f: f.assign(converted=f["converted"].astype(float).where(f.lead_id != 7)),
            {},
            r"'converted' is empty for 1 lead\(s\) \(lead_id 7\)",
        ),
        (lambda f: f.assign(converted=f["converted"] * 2), {}, "0/1"),
        (lambda f: f.assign(probability=f["probability"] + 0.5), {}, "between 0 and 1"),
        (lambda f: f.assign(lead_id=1), {}, "unique"),
        (lambda f: f, {"source": "channel"}, "'channel'"),
        (lambda f: f, {"cost_per_lead": {"Google": 1.0}}, "source column"),
        (
            lambda f: f.assign(cost=1.0),
            {"source": "Lead Source", "cost_column": "cost", "cost_per_lead": {"a": 1.0}},
            "not both",
        ),
        (lambda f: f.assign(cost=-1.0), {"cost_column": "cost"}, "not negative"),
    ],
)
def test_bad_input_is_named(change: object, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compare_model_and_rules(change(ten_leads()), **kwargs)  # type: ignore[operator, arg-type]


def test_json_is_strict_and_complete(ten: Comparison) -> None:
    def no_nan(name: str) -> None:
        raise AssertionError(f"{name} in JSON")

    document = json.loads(ten.to_json(), parse_constant=no_nan)
    assert document["equal_volume"]["model"] == {
        "leads": 4,
        "converted": 3,
        "conversion_rate": 0.75,
        "lift": pytest.approx(1.875),
    }
    assert document["by_rule_band"][3]["conversion_rate"] is None
    assert document["costs"]["total_spend"] == 190.0
    assert "leads" not in document


# --- the page ---------------------------------------------------------------------------------


def test_page_holds_the_key_numbers(ten: Comparison) -> None:
    page = comparison_html(ten, csv_href="/compare.csv")
    found = elements_by_id(page)
    expected = {
        "model-count": ("4", "4"),
        "model-converted": ("3", "3"),
        "model-rate": ("0.75", "75.0%"),
        "rules-rate": ("0.25", "25.0%"),
        "model-only-rate": ("1.0", "100.0%"),
        "rules-only-count": ("2", "2"),
        "sel-base-rate": ("0.4", "40.0%"),
        "conversion-ratio": ("3.0", "3.00×"),
    }
    for element_id, (value, text) in expected.items():
        assert (found[element_id].attrs["data-value"], found[element_id].text) == (value, text)
    assert found["headline"].text == (
        "Of the 4 leads the model would pass to sales, 3 (75.0%) converted; "
        "of the 4 leads the rules would pass, 1 (25.0%) converted."
    )
    assert "2 more converted leads" in found["verdict"].text
    assert found["csv-link"].attrs["href"] == "/compare.csv"
    for chart in ("chart-deciles", "chart-tiers", "chart-bands", "chart-sources"):
        assert found[chart].tag == "svg"
    data = json.loads(found["compare-data"].text)
    assert data["sources"] == ["Google", "Webinar", "Referral", "(missing)"]
    assert len(data["leads"]["csv"]) == 10


def test_page_is_self_contained(ten: Comparison) -> None:
    page = comparison_html(ten)
    # url(#…) points inside the page (the charts' clip paths); anything else would be fetched.
    assert not re.search(r"https?://|<link\b|\bsrc=|@import|url\((?!#)", page)


def test_page_escapes_what_the_data_says() -> None:
    frame = ten_leads()
    frame["Lead Source"] = frame["Lead Source"].replace(
        "Google", '</script><script>alert("x")</script>'
    )
    frame["reasons"] = pd.Series([reasons("<b>bold</b>")] * 10, dtype=object)
    page = comparison_html(compare_model_and_rules(frame, source="Lead Source"))
    assert "<script>alert" not in page and "<b>bold" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert" in page  # shown as text in the tables
    data = elements_by_id(page)["compare-data"].text
    assert '</script><script>alert("x")</script>' in json.loads(data)["sources"]


def test_chart_text_is_plain_text() -> None:
    frame = ten_leads()
    frame["Lead Source"] = frame["Lead Source"].replace("Google", '$5 & $6 <b> id="x"')
    svg = charts(compare_model_and_rules(frame, source="Lead Source"))["sources"]
    assert '>$5 &amp; $6 &lt;b&gt; id="x"</text>' in svg  # not mathtext, markup or an id


# --- the charts -------------------------------------------------------------------------------


def test_charts_are_svg_made_for_the_page(ten: Comparison) -> None:
    made = charts(ten)
    assert made == charts(ten)  # the same SVG on every render
    assert set(made) == {"deciles", "tiers", "bands", "sources"}
    for name, svg in made.items():
        chart_id = f"chart-{name}"
        assert svg.startswith(f'<svg id="{chart_id}" class="chart" viewBox="')
        assert f'<title id="{chart_id}-title">' in svg
        assert "<?xml" not in svg and "xmlns" not in svg and "<metadata" not in svg
        ids = re.findall(r'\bid="([^"]*)"', svg)
        assert all(i == chart_id or i.startswith(f"{chart_id}-") for i in ids)
        references = re.findall(r'(?:url\(#|href="#)([^)"]*)', svg)
        assert set(references) <= set(ids)
    # Decile 1 by the model is lead 1, converted: lift 1 / 0.4. Tier A: both leads converted.
    assert "<title>Model, 1: 2.50×</title>" in made["deciles"]
    assert ">100.0%</text>" in made["tiers"]
    assert ">average lead</text>" in made["deciles"] and ">all leads</text>" in made["sources"]
    ids = re.findall(r'\bid="([^"]*)"', comparison_html(ten))
    assert [i for i, n in collections.Counter(ids).items() if n > 1] == []


def test_chart_marks_empty_deciles_n_a() -> None:
    # Equal points: all leads stay in the first decile, so the rules' other nine are empty.
    c = compare_model_and_rules(ten_leads().assign(rule_score=50.0), rules_threshold=60)
    assert sum(math.isnan(row.lift) for row in c.deciles_rules) == 9
    assert charts(c)["deciles"].count(">n/a</text>") == 9


# --- the page's filters -----------------------------------------------------------------------

BASIS_COLUMN = {"equal_volume": "model_top_n", "own_threshold": "model_mql"}


def plain(lists: ListComparison) -> str:
    return json.dumps(dataclasses.asdict(lists), sort_keys=True)  # NaN equals NaN as text


def report_on_the_leads_of(
    c: Comparison, source: str | None, tier: str | None, basis: str
) -> tuple[pd.DataFrame, ListComparison]:
    """The filter's leads, and `compare_model_and_rules` on them with the model's list (chosen
    on all leads) given as their `mql`: the lists as the page shows them within the filter."""
    leads = c.leads
    inside = pd.Series(True, index=leads.index)
    if source is not None:
        inside &= leads["source"] == source
    if tier is not None:
        inside &= leads["tier"] == tier
    subset = leads[inside].assign(mql=leads.loc[inside, BASIS_COLUMN[basis]])
    lists = compare_model_and_rules(subset).own_threshold
    return subset, dataclasses.replace(lists, basis=basis)


def number(pair: list[str]) -> float:
    return math.nan if pair[0] == "" else float(pair[0])


@pytest.mark.parametrize("which", ["ten", "realistic"])
def test_each_filter_is_the_report_on_its_leads(which: str) -> None:
    if which == "ten":
        c = compare_model_and_rules(ten_leads(), source="Lead Source")
    else:
        c = compare_model_and_rules(example_scored_leads(n=600, seed=5), source="lead_source")
    data = page_data(c)
    for basis in BASIS_COLUMN:  # unfiltered, the page shows the report's own numbers
        assert plain(compare_within(c).lists()[basis]) == plain(c.lists()[basis])
    for source in [None, *data["sources"]]:
        for tier in [None, *data["tiers"]]:
            for basis in BASIS_COLUMN:
                subset, want = report_on_the_leads_of(c, source, tier, basis)
                got = compare_within(c, source=source, tier=tier)
                assert plain(got.lists()[basis]) == plain(want), (source, tier, basis)
                assert (got.leads.leads, got.leads.converted) == (
                    len(subset),
                    int(subset["converted"].sum()),
                )
                view = data["views"][source or ""][tier or ""][basis]
                assert view["headline"] == headline(want)
                assert view["verdict"] == verdict(want)
                numbers = view["numbers"]
                for key, value in {
                    "sel-leads": len(subset),
                    "model-count": want.model.leads,
                    "model-converted": want.model.converted,
                    "model-rate": want.model.conversion_rate,
                    "model-lift": want.model.lift,
                    "rules-rate": want.rules.conversion_rate,
                    "rules-only-converted": want.rules_only.converted,
                    "conversion-ratio": want.conversion_ratio,
                    "overlap-share": want.overlap_share,
                }.items():
                    got_value = number(numbers[key])
                    assert got_value == value or (math.isnan(got_value) and math.isnan(value)), key


def test_page_csv_records_are_the_csv_file(ten: Comparison) -> None:
    frame = ten_leads()
    frame["reasons"] = pd.Series([reasons('said "call me",\nthen left')] * 10, dtype=object)
    c = compare_model_and_rules(frame, source="Lead Source")
    data = page_data(c)
    header, records = data["csv_header"], data["leads"]["csv"]
    assert len(records) == 10
    assert "\n".join([header, *records]) + "\n" == leads_csv(c)
    # One record per lead in the page's order: a download of one source is its leads' rows.
    google = [r for r, s in zip(records, data["leads"]["source"], strict=True) if s == 0]
    assert data["sources"][0] == "Google"
    rows = read_csv("\n".join([header, *google]) + "\n")
    assert rows["lead_id"].tolist() == [1, 2, 5, 9]
    assert rows["reasons_for"].tolist() == ['said "call me",\nthen left'] * 4


def test_table_texts_cover_the_first_rows_of_every_filter() -> None:
    c = compare_model_and_rules(example_scored_leads(n=400, seed=3), source="lead_source")
    data = page_data(c, max_rows=2)
    cells, leads = data["leads"]["cells"], c.leads
    rules = leads["rule_mql"]
    for source in [None, *data["sources"]]:
        for tier in [None, *data["tiers"]]:
            inside = pd.Series(True, index=leads.index)
            if source is not None:
                inside &= leads["source"] == source
            if tier is not None:
                inside &= leads["tier"] == tier
            for basis, column in BASIS_COLUMN.items():
                model = leads[column]
                shows: dict[str, Any] = {
                    "either": model | rules,
                    "both": model & rules,
                    "model_only": model & ~rules,
                    "rules_only": rules & ~model,
                    "all": True,
                }
                view = data["views"][source or ""][tier or ""][basis]
                for show, listed in shows.items():
                    chosen = np.flatnonzero(inside & listed)
                    assert view["shown"][show][0] == len(chosen), (source, tier, basis, show)
                    assert all(cells[i] is not None for i in chosen[:2])
    assert sum(cell is not None for cell in cells) < len(cells) / 2  # only what can be shown
    first = leads.iloc[0]
    assert cells[0] == [
        "1",
        str(first["lead_id"]),
        first["source"],
        first["tier"],
        f"{first['probability']:.1%}",
        f"{first['rule_score']:g}",
        "yes" if first["converted"] else "no",
        first["reasons_for"],
        first["reasons_against"],
    ]


# --- CSV lists and files ----------------------------------------------------------------------


def read_csv(text: str) -> pd.DataFrame:
    from io import StringIO

    return pd.read_csv(StringIO(text))


def test_csv_lists(ten: Comparison) -> None:
    lists = {name: read_csv(text) for name, text in csv_lists(ten).items()}
    assert lists[MODEL_LIST_FILE]["lead_id"].tolist() == [1, 2, 3, 4, 5]
    assert lists[MODEL_TOP_N_FILE]["lead_id"].tolist() == [1, 2, 3, 4]
    assert lists[RULES_LIST_FILE]["lead_id"].tolist() == [5, 1, 3, 10]  # most points first
    everyone = lists[ALL_LEADS_FILE]
    assert everyone["lead_id"].tolist() == list(range(1, 11))
    assert list(everyone.columns) == [
        "lead_id",
        "source",
        "probability",
        "tier",
        "model_rank",
        "model_mql",
        "model_top_n",
        "rule_score",
        "rule_mql",
        "rule_band",
        "converted",
        "cost",
        "reasons_for",
        "reasons_against",
    ]
    first = everyone.iloc[0]
    assert (first["source"], first["probability"], first["rule_score"]) == ("Google", 0.9, 70.0)
    assert first["reasons_for"] == "requested a demo; viewed pricing"
    assert leads_csv(ten) == csv_lists(ten)[ALL_LEADS_FILE]


def test_csv_defuses_spreadsheet_formulas() -> None:
    frame = ten_leads()
    frame["Lead Source"] = frame["Lead Source"].replace("Google", "=HYPERLINK(1)")
    text = leads_csv(compare_model_and_rules(frame, source="Lead Source"))
    assert "'=HYPERLINK(1)" in text and ",=HYPERLINK" not in text


def test_write_comparison(ten: Comparison, tmp_path: Path) -> None:
    out = tmp_path / "report"
    paths = write_comparison(ten, out)
    names = {
        HTML_FILE,
        JSON_FILE,
        ALL_LEADS_FILE,
        MODEL_LIST_FILE,
        MODEL_TOP_N_FILE,
        RULES_LIST_FILE,
    }
    assert {p.name for p in paths} == names
    assert {p.name for p in out.iterdir()} == names  # no temporaries left
    assert (out / HTML_FILE).read_text(encoding="utf-8") == comparison_html(ten)
    assert json.loads((out / JSON_FILE).read_text())["n_leads"] == 10
    assert pd.read_csv(out / MODEL_TOP_N_FILE)["lead_id"].tolist() == [1, 2, 3, 4]


def test_a_failed_write_leaves_nothing(
    ten: Comparison, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / HTML_FILE).write_text("the previous report")
    written: list[Path] = []
    real_write_text = Path.write_text

    def failing(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if len(written) == 3:
            raise OSError("disk full")
        written.append(self)
        return real_write_text(self, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", failing)
    with pytest.raises(OSError, match="disk full"):
        write_comparison(ten, out)
    monkeypatch.undo()
    assert len(written) == 3  # three files were already written when it failed
    assert [p.name for p in out.iterdir()] == [HTML_FILE]
    assert (out / HTML_FILE).read_text() == "the previous report"


def test_realistic_frame_with_costs_renders() -> None:
    frame = example_scored_leads(n=300, seed=2, source_column="Lead Source")
    c = compare_model_and_rules(
        frame, source="Lead Source", cost_per_lead=COST_PER_LEAD, rules_threshold=RULES_THRESHOLD
    )
    page = elements_by_id(comparison_html(c, max_rows=25))
    assert "cost-table" in page and "cost-warning" not in page
    rows = [line for line in comparison_html(c, max_rows=25).split("<tr data-lead-id=")[1:]]
    assert len(rows) == 25
    assert c.period is not None and c.period[0].startswith("2024-")

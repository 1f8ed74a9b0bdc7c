"""The comparison page in a real headless Chromium: numbers after the script ran, filters from
the address, and a screenshot that shows something.

Expected numbers come from plain pandas on the example frame, not from models.reports.comparison.
"""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest

from models.reports.comparison import compare_model_and_rules, comparison_html
from tests.browser import (
    Element,
    descendants,
    dump_dom,
    elements_by_id,
    image_stats,
    require_chromium,
    screenshot,
)
from tests.compare_fixtures import COST_PER_LEAD, RULES_THRESHOLD, example_scored_leads

pytestmark = pytest.mark.browser

MAX_ROWS = 100


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    return example_scored_leads()


@pytest.fixture(scope="module")
def page_url(leads: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> str:
    require_chromium()
    comparison = compare_model_and_rules(
        leads, source="lead_source", cost_per_lead=COST_PER_LEAD, rules_threshold=RULES_THRESHOLD
    )
    path = tmp_path_factory.mktemp("page") / "compare.html"
    path.write_text(comparison_html(comparison, max_rows=MAX_ROWS), encoding="utf-8")
    return path.as_uri()


def expected(
    leads: pd.DataFrame,
    source: str | None = None,
    tier: str | None = None,
    basis: str = "equal_volume",
    show: str = "either",
) -> dict[str, float]:
    """The page's numbers, worked out with pandas: lists chosen on all leads, then filtered."""
    n = int(leads["rule_mql"].sum())
    best = leads.sort_values(["probability", "lead_id"], ascending=[False, True]).head(n)
    model = leads["lead_id"].isin(best["lead_id"]) if basis == "equal_volume" else leads["mql"]
    rules = leads["rule_mql"]
    inside = pd.Series(True, index=leads.index)
    if source is not None:
        inside &= leads["lead_source"] == source
    if tier is not None:
        inside &= leads["tier"] == tier
    y = leads["converted"]
    shown = {
        "either": model | rules,
        "model_only": model & ~rules,
        "rules_only": rules & ~model,
        "all": pd.Series(True, index=leads.index),
    }[show]
    return {
        "sel-leads": int(inside.sum()),
        "sel-converted": int(y[inside].sum()),
        "model-count": int((inside & model).sum()),
        "model-converted": int(y[inside & model].sum()),
        "model-rate": float(y[inside & model].mean()),
        "rules-count": int((inside & rules).sum()),
        "rules-converted": int(y[inside & rules].sum()),
        "rules-rate": float(y[inside & rules].mean()),
        "both-count": int((inside & model & rules).sum()),
        "model-only-count": int((inside & model & ~rules).sum()),
        "rules-only-converted": int(y[inside & rules & ~model].sum()),
        "table-total": int((inside & shown).sum()),
    }


def check_numbers(dom: str, want: dict[str, float]) -> dict[str, Element]:
    found = elements_by_id(dom)
    assert found["filter-state"].attrs["data-ready"] == "yes", "the page's script did not run"
    for key, value in want.items():
        if key == "table-total":
            continue
        got = found[key].attrs["data-value"]
        if math.isnan(value):  # e.g. the rate of an empty list
            assert (got, found[key].text) == ("", "n/a"), key
            continue
        assert float(got) == pytest.approx(value), key
        if key.endswith("-rate"):
            assert found[key].text == f"{value * 100:.1f}%", key
        else:
            assert found[key].text == f"{int(value):,}", key
    total = int(want["table-total"])
    assert int(found["lead-table-count"].attrs["data-total"]) == total
    assert int(found["download-csv"].attrs["data-rows"]) == total
    rows = descendants(found["lead-table"], "tr")[1:]  # the first is the header
    assert len(rows) == min(total, MAX_ROWS)
    return found


def test_page_shows_the_key_numbers(page_url: str, leads: pd.DataFrame) -> None:
    want = expected(leads)
    found = check_numbers(dump_dom(page_url), want)
    headline = found["headline"].text
    assert headline.startswith(f"Of the {want['model-count']:,} leads the model would pass")
    assert f"{want['model-rate']:.1%}" in headline and f"{want['rules-rate']:.1%}" in headline
    assert "filter-warning" in found and found["filter-warning"].attrs.get("hidden") is not None


def test_filters_from_the_query_string(page_url: str, leads: pd.DataFrame) -> None:
    dom = dump_dom(f"{page_url}?source=Webinar&tier=A")
    found = check_numbers(dom, expected(leads, source="Webinar", tier="A"))
    state = found["filter-state"].attrs
    assert (state["data-source"], state["data-tier"]) == ("Webinar", "A")
    for row in descendants(found["lead-table"], "tr")[1:]:
        cells = [cell.text.strip() for cell in descendants(row, "td")]
        assert cells[2:4] == ["Webinar", "A"]


def test_filters_from_the_hash(page_url: str, leads: pd.DataFrame) -> None:
    dom = dump_dom(f"{page_url}#source=Google%20Ads&basis=own_threshold&list=model_only")
    check_numbers(
        dom, expected(leads, source="Google Ads", basis="own_threshold", show="model_only")
    )


@pytest.mark.parametrize(
    ("tier", "show", "marks"),
    [
        ("B", "model_only", ["✓", ""]),
        ("C", "rules_only", ["", "✓"]),
    ],
)
def test_marks_and_texts_follow_the_filters(
    page_url: str, leads: pd.DataFrame, tier: str, show: str, marks: list[str]
) -> None:
    dom = dump_dom(f"{page_url}?tier={tier}#basis=own_threshold&list={show}")
    want = expected(leads, tier=tier, basis="own_threshold", show=show)
    found = check_numbers(dom, want)
    rows = descendants(found["lead-table"], "tr")[1:]
    assert rows, f"no lead to show in tier {tier}"
    for row in rows:
        cells = [cell.text.strip() for cell in descendants(row, "td")]
        assert cells[3] == tier and cells[6:8] == marks  # tier, model's list, rules' list
    model, rules = want["model-count"], want["rules-count"]
    assert found["headline"].text.startswith(
        f"Of the {model:,} leads the model would pass"
        if model
        else "The model would pass no leads to sales;"
    )
    assert f"of the {rules:,} leads the rules would pass" in found["headline"].text
    if model != rules and model and rules:
        ratio = want["model-rate"] / want["rules-rate"]
        assert found["verdict"].text == (
            f"The model's list converts at {ratio:.2f}× the rate of the rules' list."
        )


def test_list_marks_follow_the_basis(page_url: str, leads: pd.DataFrame) -> None:
    # A lead on the model's list at its own threshold but not in its top N, among its
    # source's and tier's leads (fewer than MAX_ROWS, so all are in the table).
    n = int(leads["rule_mql"].sum())
    best = leads.sort_values(["probability", "lead_id"], ascending=[False, True]).head(n)
    top_n = set(best["lead_id"])
    beyond = leads[leads["mql"] & ~leads["lead_id"].isin(top_n)].iloc[0]
    source, tier = str(beyond["lead_source"]), str(beyond["tier"])
    rules = set(leads.loc[leads["rule_mql"], "lead_id"])
    for basis, model in (
        ("own_threshold", set(leads.loc[leads["mql"], "lead_id"])),
        ("equal_volume", top_n),
    ):
        dom = dump_dom(f"{page_url}?source={quote(source)}&tier={tier}#basis={basis}&list=all")
        want = expected(leads, source=source, tier=tier, basis=basis, show="all")
        found = check_numbers(dom, want)
        marks = {}
        for row in descendants(found["lead-table"], "tr")[1:]:
            cells = [cell.text.strip() for cell in descendants(row, "td")]
            marks[int(row.attrs["data-lead-id"])] = cells[6:8]
        assert int(beyond["lead_id"]) in marks
        assert marks == {
            lead: ["✓" if lead in model else "", "✓" if lead in rules else ""] for lead in marks
        }


def test_unknown_filter_value_is_said_not_applied(page_url: str, leads: pd.DataFrame) -> None:
    found = check_numbers(dump_dom(f"{page_url}?source=Fax&tier=B"), expected(leads, tier="B"))
    warning = found["filter-warning"]
    assert warning.attrs.get("hidden") is None
    assert "Fax" in warning.text


def test_screenshot_is_not_blank(page_url: str, tmp_path: Path) -> None:
    stats = image_stats(screenshot(page_url, tmp_path / "compare.png"))
    # Text, coloured cards and charts: many colours and a real share of ink on white.
    assert stats.distinct_colours > 50
    assert stats.non_white_share > 0.04

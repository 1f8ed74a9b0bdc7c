"""Per-lead reasons: LightGBM's own feature contributions, in words a marketer understands.

`booster.predict(X, pred_contrib=True)` gives, per lead, one raw log-odds contribution per feature
plus the bias. A `ReasonWriter` turns the largest ones for and against the score into phrases such
as "3 pricing-page visits in the last 7 days" or "job title: VP".

Everything that depends only on the feature name (which family it belongs to, its words, its
fixed strings) is decided once, when the writer is built; per batch the top picks are found for all
leads at once and only their values formatted (each distinct value once per column), so the same
writer serves batch scoring and a one-lead API call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, SupportsFloat, cast

import numpy as np
import pandas as pd

from features.build import behaviour_feature_names
from features.config import FeatureConfig

# Contributions smaller than this say nothing worth telling and are left out.
MIN_CONTRIBUTION = 1e-9
FOR, AGAINST = "for", "against"

Formatter = Callable[[object], str]


@dataclass(frozen=True, slots=True)
class Reason:
    """One feature's pull on one lead's score, and what it means in words."""

    feature: str
    phrase: str
    contribution: float  # raw log-odds contribution (positive = for)

    def as_dict(self) -> dict[str, object]:
        return {"feature": self.feature, "phrase": self.phrase, "contribution": self.contribution}


# `Reason(...)` sets each field through object.__setattr__ (the class is frozen), which looks the
# name up on the type every time; setting the three slots directly builds the same object in about
# half the time, and 1,000 leads take 6,000 of them. (Reason has no __post_init__ to run.)
_new_object = object.__new__
_set_feature = Reason.__dict__["feature"].__set__
_set_phrase = Reason.__dict__["phrase"].__set__
_set_contribution = Reason.__dict__["contribution"].__set__


def _reason(feature: str, phrase: str, contribution: float) -> Reason:
    """`Reason(feature, phrase, contribution)`, built faster (see above)."""
    reason: Reason = _new_object(Reason)
    _set_feature(reason, feature)
    _set_phrase(reason, phrase)
    _set_contribution(reason, contribution)
    return reason


@dataclass(frozen=True)
class EventWords:
    """How to speak about one event type.

    `one`/`many` name a single event and several ("demo request(s)"); `did` is the past-tense act
    ("requested a demo") for "never ...". Without a natural noun (`one` is None) counts are spoken
    with the verb: "unsubscribed 2 times in the last 7 days".
    """

    one: str | None
    many: str | None
    did: str


EVENT_WORDS: dict[str, EventWords] = {
    "email_sent": EventWords("email received", "emails received", "received an email"),
    "email_open": EventWords("email opened", "emails opened", "opened an email"),
    "email_click": EventWords("email click", "email clicks", "clicked a link in an email"),
    "email_bounce": EventWords("bounced email", "bounced emails", "had an email bounce"),
    "unsubscribe": EventWords(None, None, "unsubscribed"),
    "page_view": EventWords("page visit", "page visits", "visited the website"),
    "pricing_page_view": EventWords(
        "pricing-page visit", "pricing-page visits", "visited the pricing page"
    ),
    "docs_page_view": EventWords("docs-page visit", "docs-page visits", "visited the docs"),
    "content_download": EventWords("content download", "content downloads", "downloaded content"),
    "webinar_registered": EventWords(
        "webinar registration", "webinar registrations", "registered for a webinar"
    ),
    "webinar_attended": EventWords("webinar attended", "webinars attended", "attended a webinar"),
    "form_fill": EventWords("form filled", "forms filled", "filled in a form"),
    "demo_request": EventWords("demo request", "demo requests", "requested a demo"),
    "trial_request": EventWords("trial request", "trial requests", "requested a trial"),
}

SENIORITY_WORDS: dict[str, str] = {
    "c_level": "C-level",
    "founder": "founder or owner",
    "vp": "VP",
    "director": "director",
    "manager": "manager",
    "individual": "individual contributor",
    "consultant": "consultant",
    "student": "student",
    "other": "other",
}

FUNCTION_WORDS: dict[str, str] = {
    "general_management": "general management",
    "it": "IT",
    "hr": "HR",
}

# Above / below these 7-day vs 30-day rate ratios activity is "picking up" / "slowing down".
VELOCITY_UP, VELOCITY_DOWN = 1.2, 0.8
# Under this many days since the last action we say "last active ..." rather than "no activity".
QUIET_AFTER_DAYS = 7


def event_words(kind: str) -> EventWords:
    """Words for an event type; an unknown type is spoken as its name with spaces."""
    known = EVENT_WORDS.get(kind)
    if known is not None:
        return known
    name = kind.replace("_", " ").strip()
    return EventWords(f"{name} event", f"{name} events", f"had a {name} event")


# --- values -----------------------------------------------------------------------------------


def is_missing(value: object) -> bool:
    """None, NaN or pd.NA (what a category column or a float feature holds when unknown)."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def format_number(value: float) -> str:
    """Integers without decimals, other numbers to 3 significant digits, never in e-notation."""
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer():
        return str(int(value))
    return np.format_float_positional(value, precision=3, fractional=False, trim="-")


def format_value(value: object) -> str:
    """Any feature value as text: numbers formatted, booleans as yes/no, the rest as is."""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | float | np.integer | np.floating):
        return format_number(float(value))
    return str(value)


def _num(value: object) -> float:
    return float(cast("SupportsFloat", value))


def _count(value: object) -> int:
    return max(0, round(_num(value)))


def _whole_days(value: object) -> int:
    # Floor, so that anything under one day reads "today" and 1.9 days is still "1 day ago".
    return max(0, math.floor(_num(value)))


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def days_ago(value: object) -> str:
    n = _whole_days(value)
    return "today" if n == 0 else f"{_plural(n, 'day', 'days')} ago"


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def humanise(name: str) -> str:
    """A column name as words: "company_size" -> "company size", "TotalVisits" -> "total visits".

    Capitalised words are lowered so the name reads inside a phrase; acronyms ("ROI") are kept.
    """
    text = name.replace("_", " ")
    if " " not in text.strip():
        text = _CAMEL_BOUNDARY.sub(" ", text)
    words = [
        w.lower() if len(w) > 1 and w[0].isupper() and w[1:].islower() else w for w in text.split()
    ]
    return " ".join(words) or name


# --- formatters per feature family ---------------------------------------------------------------


def _event_count(words: EventWords, span: str, none_span: str) -> Formatter:
    """Counts in a span ("in the last 7 days", "so far"); `none_span` for zero ("yet")."""
    if words.one is not None and words.many is not None:
        one, many = words.one, words.many
        zero, single = f"no {one} {none_span}", f"1 {one} {span}"
        unknown = f"{many} {span}: unknown"

        def noun(value: object) -> str:
            if is_missing(value):
                return unknown
            n = _count(value)
            return zero if n == 0 else single if n == 1 else f"{n} {many} {span}"

        return noun

    did = words.did
    zero = f"not {did} {none_span}"
    single = f"{did} {span}" if span != "so far" else did
    unknown = f"{did} {span}: unknown"

    def verb(value: object) -> str:
        if is_missing(value):
            return unknown
        n = _count(value)
        return zero if n == 0 else single if n == 1 else f"{did} {n} times {span}"

    return verb


def _event_days_since(words: EventWords) -> Formatter:
    never = f"never {words.did}"
    last = f"last {words.one}" if words.one is not None else words.did

    def fmt(value: object) -> str:
        return never if is_missing(value) else f"{last} {days_ago(value)}"

    return fmt


def _engagement(value: object) -> str:
    if is_missing(value):
        return "engagement unknown"
    score = _num(value)
    if score <= 0:
        return "no engagement yet"
    return f"engagement score {format_number(score)} (recent actions weigh most)"


def _active_days(value: object) -> str:
    if is_missing(value):
        return "active days unknown"
    n = _count(value)
    if n == 0:
        return "not active yet"
    return "active on 1 day" if n == 1 else f"active on {n} different days"


def _velocity(value: object) -> str:
    if is_missing(value):
        return "activity trend unknown"
    ratio = _num(value)
    if ratio <= 0:
        # The builder writes 0 both for "nothing in 30 days" and "nothing in the last 7".
        return "no activity in the last 7 days"
    # Decide on the rounded ratio shown, so "1.2x" never reads as both steady and picking up.
    shown = round(ratio, 1)
    times = f"{shown:.1f}x" if shown > 0 else "under 0.1x"
    rate = f"(7-day rate {times} the 30-day rate)"
    if shown > VELOCITY_UP:
        return f"activity picking up {rate}"
    if shown < VELOCITY_DOWN:
        return f"activity slowing down {rate}"
    return f"activity steady {rate}"


def _days_since_activity(value: object) -> str:
    if is_missing(value):
        return "no activity yet"
    n = _whole_days(value)
    if n == 0:
        return "active today"
    if n < QUIET_AFTER_DAYS:
        return f"last active {_plural(n, 'day', 'days')} ago"
    return f"no activity for {n} days"


def _open_rate(value: object) -> str:
    if is_missing(value):
        return "no emails received yet"
    rate = _num(value)
    if rate <= 0:
        return "never opened an email"
    if rate >= 1:
        # Opens are counted per open, so a lead can "open" more emails than were sent.
        return "opened every email"
    # Keep 0 and 100 for the exact cases above.
    return f"opened {min(99, max(1, round(rate * 100)))}% of emails"


def _lead_age(value: object) -> str:
    return "lead creation date unknown" if is_missing(value) else f"lead created {days_ago(value)}"


def _seniority(value: object) -> str:
    if is_missing(value):
        return "no job title"
    level = str(value)
    return f"job title: {SENIORITY_WORDS.get(level, level.replace('_', ' '))}"


def _job_function(value: object) -> str:
    if is_missing(value):
        return "job function unknown"
    return f"job function: {FUNCTION_WORDS.get(str(value), str(value).replace('_', ' '))}"


def _account_leads(value: object) -> str:
    if is_missing(value):
        return "no company account"
    count = int(_num(value))
    return "the only lead from this company" if count <= 1 else f"{count} leads from this company"


def _account_engagement(value: object) -> str:
    if is_missing(value):
        return "no company account"
    if _num(value) <= 0:
        return "no engagement from this company yet"
    return f"company engagement score {format_number(_num(value))} (recent actions weigh most)"


def _account_recent(value: object) -> str:
    if is_missing(value):
        return "no company account"
    count = int(_num(value))
    if count == 0:
        return "nobody at this company active in the last 30 days"
    return (
        f"{count} action{'s' if count != 1 else ''} by people at this company in the last 30 days"
    )


def _company_email(value: object) -> str:
    if is_missing(value):
        return "no email address"
    return "company email domain" if _num(value) >= 0.5 else "free-mail address"


def _labelled(name: str) -> Formatter:
    """Categoricals and any other column: "company size: 201-1000", "company size unknown"."""
    label = humanise(name)
    unknown = f"{label} unknown"

    def fmt(value: object) -> str:
        return unknown if is_missing(value) else f"{label}: {format_value(value)}"

    return fmt


_FIXED: dict[str, Formatter] = {
    "engagement_decayed": _engagement,
    "active_days": _active_days,
    "velocity_7d_vs_30d": _velocity,
    "days_since_last_activity": _days_since_activity,
    "email_open_rate": _open_rate,
}


def formatters_for(config: FeatureConfig) -> dict[str, tuple[str, Formatter]]:
    """(family, formatter) for every feature name `config` can produce.

    Built from the config rather than by parsing names, so a user column that happens to end in
    "_count_all" is never mistaken for an event count.
    """
    out: dict[str, tuple[str, Formatter]] = {}
    for name in config.categorical_columns:
        out[name] = ("categorical", _labelled(name))
    for name in config.numeric_columns:
        out[name] = ("numeric", _labelled(name))
    # Snapshot exports: aggregated behaviour columns are told apart from who the lead is.
    for name in config.behaviour_columns:
        if name in out:
            out[name] = ("behaviour", out[name][1])
    if config.title_column is not None:
        out["seniority"] = ("seniority", _seniority)
        out["job_function"] = ("job_function", _job_function)
    if config.email_column is not None:
        out["is_company_email"] = ("company_email", _company_email)
    out["lead_age_days"] = ("lead_age", _lead_age)
    if config.account_column is not None:
        out["account_leads"] = ("account_leads", _account_leads)
        out["account_engagement_decayed"] = ("account_engagement", _account_engagement)
        out["account_events_30d"] = ("account_recent", _account_recent)
    behaviour = set(behaviour_feature_names(config))
    for name, fmt in _FIXED.items():
        if name in behaviour:
            out[name] = (name, fmt)
    for kind in config.event_types:
        words = event_words(kind)
        for window in config.windows_days:
            span = "in the last day" if window == 1 else f"in the last {window} days"
            out[f"{kind}_count_{window}d"] = ("event_count", _event_count(words, span, span))
        out[f"{kind}_count_all"] = ("event_count", _event_count(words, "so far", "yet"))
        out[f"{kind}_days_since_last"] = ("event_days_since", _event_days_since(words))
    return out


# A frame's columns are checked up front; a mapping of feature values (the scorer's) is not.
_FRAME = pd.DataFrame
# The noise floor on `_top_picks`' keys (where pulls for are negated); an array broadcasts faster
# than a Python float.
_FLOOR = np.array(-MIN_CONTRIBUTION)

# Reads the phrase of a column's value at one row.
PhraseAt = Callable[[int], str]


def _phrase_reader(column: np.ndarray, fmt: Formatter) -> PhraseAt:
    """The phrase of `column[i]`, each distinct value formatted once per batch (leads share
    values, and formatters are pure functions of the value).

    Values are matched only where matching cannot change the phrase: numbers by their bits (so
    0.0 and -0.0 never share a phrase), texts by exact `str` equality, None by identity. Any other
    object (1 and True are equal, yet read differently) is formatted every time it is told.
    """
    phrases: dict[object, str] = {}
    if (
        column.ndim == 1
        and column.dtype.kind in "biufcmM"
        and column.dtype.itemsize in (1, 2, 4, 8)
    ):
        bits = column.view(f"u{column.dtype.itemsize}")

        def by_bits(i: int) -> str:
            key = bits[i]
            phrase = phrases.get(key)
            if phrase is None:
                phrase = phrases[key] = fmt(column[i])
            return phrase

        return by_bits
    if column.ndim == 1 and column.dtype == object:

        def by_text(i: int) -> str:
            value = column[i]
            if value is not None and type(value) is not str:
                return fmt(value)
            phrase = phrases.get(value)
            if phrase is None:
                phrase = phrases[value] = fmt(value)
            return phrase

        return by_text
    return lambda i: fmt(column[i])


# --- the writer --------------------------------------------------------------------------------


class ReasonWriter:
    """Turns contribution rows into the top reasons for and against each lead's score."""

    def __init__(self, feature_names: list[str], config: FeatureConfig, top_k: int = 3) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        if len(set(feature_names)) != len(feature_names):
            raise ValueError("feature_names has duplicates")
        known = formatters_for(config)
        self.feature_names: tuple[str, ...] = tuple(feature_names)
        self.top_k = top_k
        self.families: dict[str, str] = {}
        self.formatters: dict[str, Formatter] = {}
        for name in feature_names:
            family, fmt = known.get(name, ("other", _labelled(name)))
            self.families[name] = family
            self.formatters[name] = fmt
        # Position-indexed copies: the per-lead path only indexes tuples.
        self._by_index: tuple[Formatter, ...] = tuple(self.formatters[n] for n in feature_names)

    def phrase(self, feature: str, value: object) -> str:
        """One feature value in words; a feature the writer does not know reads "name: value"."""
        fmt = self.formatters.get(feature)
        return (fmt or _labelled(feature))(value)

    def reasons_batch(
        self, contributions: np.ndarray, frame: Mapping[str, Any] | pd.DataFrame
    ) -> list[dict[str, list[Reason]]]:
        """Top reasons for every lead: row i of `contributions` explains row i of `frame` (a
        frame, or feature values by name)."""
        matrix = self._features_only(np.asarray(contributions, dtype=np.float64), ndim=2)
        if isinstance(frame, _FRAME) and len(frame) != len(matrix):
            raise ValueError(f"{len(matrix)} contribution rows but {len(frame)} rows in the frame")
        missing = (
            [n for n in self.feature_names if n not in frame] if isinstance(frame, _FRAME) else []
        )
        if missing:
            raise KeyError(f"the frame lacks feature column(s) {', '.join(map(repr, missing))}")
        n_leads, names, fmts = len(matrix), self.feature_names, self._by_index
        leads, features, told, ends = _top_picks(matrix, min(self.top_k, matrix.shape[1]))
        feature_list = features.tolist()
        needed = sorted(set(feature_list))
        # Only the columns some lead's reasons name are read out of the frame, in feature order.
        columns = {j: np.asarray(frame[names[j]]) for j in needed}
        # When a column is told more than once (leads share values), each of its distinct values
        # is formatted once; otherwise every phrase is simply formatted.
        shared = (
            {j: _phrase_reader(columns[j], fmts[j]) for j in needed}
            if len(needed) < len(feature_list)
            else {}
        )
        # All reasons in one pass, then each lead's two sides sliced out of it.
        reasons = [
            _reason(names[j], shared[j](i) if j in shared else fmts[j](columns[j][i]), c)
            for i, j, c in zip(leads.tolist(), feature_list, told.tolist(), strict=True)
        ]
        edges = [0, *ends.tolist()]
        return [
            {
                FOR: reasons[edges[i] : edges[i + 1]],
                AGAINST: reasons[edges[n_leads + i] : edges[n_leads + i + 1]],
            }
            for i in range(n_leads)
        ]

    # --- internals ---

    def _features_only(self, contributions: np.ndarray, ndim: int) -> np.ndarray:
        n = len(self.feature_names)
        if contributions.ndim != ndim or contributions.shape[-1] not in (n, n + 1):
            raise ValueError(
                f"contributions must have {n} columns (or {n + 1} with the bias) and "
                f"{ndim} dimension(s), got shape {contributions.shape}"
            )
        features = contributions[..., :n]
        if not np.isfinite(features).all():
            raise ValueError("contributions hold NaN or infinite values")
        return features


def _top_picks(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every lead's (at most) `k` largest contributions for, then its `k` largest against,
    past MIN_CONTRIBUTION; ties go to the earlier feature (as a stable sort would order them).

    Flat, in the order told: all leads' picks for, then all leads' picks against. Returns each
    pick's lead and feature, its contribution, and `ends`: the picks of side row r (r < n for
    lead r's for, n + r for lead r's against) end at ends[r] and start where row r - 1's end.
    """
    # One ranking for both sides: row r ranks lead r's pulls for (smallest -c first), row n + r
    # lead r's pulls against (smallest c first). Negation is exact, so no value changes.
    keys = np.concatenate((-matrix, matrix))
    # A partition finds each row's k-th smallest key without sorting the row; only the few keys
    # at or under it (and under the noise floor) are then sorted, by row, key, then feature.
    ranked = keys.copy()
    ranked.partition(k - 1, axis=1)
    chosen = keys <= np.minimum(ranked[:, k - 1 : k], _FLOOR)
    side_rows, features = chosen.nonzero()  # by row, then feature
    order = np.lexsort((keys[chosen], side_rows))  # stable: equal keys stay in feature order
    side_rows, features = side_rows[order], features[order]
    counts = np.bincount(side_rows, minlength=len(keys))
    if counts.max(initial=0) > k:
        # Keys equal to a row's k-th were all chosen: keep only the row's first k.
        starts = counts.cumsum() - counts
        kept = np.arange(len(side_rows)) < starts[side_rows] + k
        side_rows, features, counts = side_rows[kept], features[kept], np.minimum(counts, k)
    leads = side_rows % max(len(matrix), 1)  # no leads, no picks: only avoid dividing by zero
    return leads, features, matrix[leads, features], counts.cumsum()

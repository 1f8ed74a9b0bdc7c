"""`serve.body.read_body`: the same values as `json.loads`, a lead at a time, and the batch limit
applied while reading."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serve.body import TooManyLeads, read_body

_json = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    top=st.one_of(st.dictionaries(st.text(), _json, max_size=4), _json),
    leads=st.none() | st.lists(_json, max_size=6),
    indent=st.sampled_from([None, 0, 2]),
)
def test_reads_what_json_loads_reads(top: Any, leads: list[Any] | None, indent: int | None) -> None:
    if isinstance(top, dict) and leads is not None:
        top = {**top, "leads": leads}
    raw = json.dumps(top, indent=indent).encode()
    assert read_body(raw, max_leads=10) == json.loads(raw)


@pytest.mark.parametrize(
    "raw",
    [b'{"leads":[1,]}', b'{"a":1', b'{"a":1}x', b"{1:2}", b"", b'{"leads":[1 2]}', b'{"a" 1}'],
)
def test_what_is_not_json_is_refused_as_json_loads_refuses_it(raw: bytes) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    with pytest.raises(json.JSONDecodeError):
        read_body(raw, max_leads=10)


def test_the_batch_limit_stops_the_reading() -> None:
    # The lead after the limit is not even JSON: reading stopped before it.
    with pytest.raises(TooManyLeads, match="at most 2 leads"):
        read_body(b'{"leads": [{}, {}, not json at all', max_leads=2)
    assert read_body(b'{"leads": [{}, {}]}', max_leads=2) == {"leads": [{}, {}]}

"""The benchmark's DuckDB reference computes the same behaviour features as `build_features`."""

from __future__ import annotations

import duckdb
import pandas as pd

from benchmarks.duckdb_reference import behaviour_sql
from features.build import behaviour_feature_names, build_features
from features.config import FeatureConfig
from tests.conftest import START, random_funnel


def test_duckdb_reference_equals_build_features() -> None:
    funnel = random_funnel(n_leads=80, n_events=3_000, seed=31)
    # The reference covers the lead's own behaviour; account features are left out of both.
    config = FeatureConfig(account_column=None)
    as_of = START + pd.Timedelta(days=150)
    ours = build_features(funnel.leads, funnel.events, as_of, config)
    spine = ours[["lead_id", "as_of"]]
    with duckdb.connect() as con:
        con.register("events", funnel.events)
        con.register("spine", spine)
        reference = con.sql(behaviour_sql(config)).to_arrow_table().to_pandas()
    names = behaviour_feature_names(config)
    assert reference["lead_id"].tolist() == ours["lead_id"].tolist()
    pd.testing.assert_frame_equal(
        reference[names].astype("float64"), ours[names], check_exact=False, rtol=1e-9
    )

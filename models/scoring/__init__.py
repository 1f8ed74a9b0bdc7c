"""The kernel's model side: `scorer` (LeadScorer: features -> LightGBM -> calibration -> policy,
rules and reasons for a batch of leads), `bundle` (the MLflow pyfunc around it), `reasons` (the
top contributions in plain words) and `treecontrib` (exact contributions from tables)."""

"""Models on the features, by role: `scoring` (the kernel's model side: the scorer, its bundle,
reasons), `training` (time split, calibration, MQL policy, training, leakage check), `rules` (the
marketer's points table and the suggested one), `reports` (evaluation, model-vs-rules comparison,
monitoring) and `registry` (MLflow)."""

"""Training: `split` (by time), `train` (LightGBM, calibration, policy, evaluation),
`calibration`, `policy` (probability -> MQL and tiers), `leakage` (columns that give the outcome
away) and `config`."""

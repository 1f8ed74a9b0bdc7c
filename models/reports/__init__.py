"""Reports: `evaluation` (model and rules through the same metrics), `comparison` (the two MQL
lists for marketers, HTML and CSV), `monitoring` (after deployment: calibration, drift)."""

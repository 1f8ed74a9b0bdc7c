"""The rule-based points: `points` (the marketer's table, exactly as written) and `scorecard`
(a suggested table fitted to the model)."""

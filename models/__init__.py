"""Models built on the features: the rule-based points baseline."""

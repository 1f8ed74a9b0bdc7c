"""Thin orchestration: the `leadscore` command line."""

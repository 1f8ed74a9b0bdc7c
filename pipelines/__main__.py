"""`python -m pipelines` runs the `leadscore` command line."""

from pipelines.cli import app

app(prog_name="leadscore")

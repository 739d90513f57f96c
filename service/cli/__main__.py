"""`python -m service.cli`: the `runyard` command without its console script."""

from service.cli.main import app

app()

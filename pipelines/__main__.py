"""`python -m pipelines COMMAND [OPTIONS]` is `tal COMMAND [OPTIONS]`: the form `ray job
submit` and cluster scripts run, with the same commands, options and exit statuses."""

from pipelines.cli import main

main()

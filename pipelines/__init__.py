"""Entry points and distributed jobs on Ray; `python -m pipelines COMMAND` is `tal COMMAND`."""

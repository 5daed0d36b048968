"""``python -m linli``: the same command line as the ``linli`` script, for hosts without it on PATH."""

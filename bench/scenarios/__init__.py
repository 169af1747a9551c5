"""One module per scenario of issue #7; each returns plain dicts for results.json."""

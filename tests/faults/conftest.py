"""The fault suite (kills, concurrency, failing cells, damaged data, bad input, a full disk, a soak); its
``tally`` fixture and the totals line live in ``tests/conftest.py`` (they add up across pytest-xdist workers)."""

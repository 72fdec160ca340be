"""Shared pytest set-up.

Benchmarks (``@pytest.mark.bench``) are slow: they run only when the marker expression asks
for them (``-m bench``, as ``make bench`` does), so a plain ``pytest`` skips them.
"""
import pytest


def pytest_collection_modifyitems(config, items):
    if "bench" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="benchmark: run it with -m bench (make bench)")
    for item in items:
        if "bench" in item.keywords:
            item.add_marker(skip)

"""A pytest plugin for stories told in steps that build on each other: a
class marked `incremental` reports, once one of its steps fails, the later
ones as expected failures of that step rather than as noise. The python and
http suites load it with `pytest_plugins`."""

import pytest


def pytest_runtest_makereport(item, call):
    if "incremental" in item.keywords and call.excinfo is not None:
        item.parent._failed_step = item


def pytest_runtest_setup(item):
    if "incremental" in item.keywords:
        failed = getattr(item.parent, "_failed_step", None)
        if failed is not None:
            pytest.xfail(f"an earlier step failed ({failed.name})")


def pytest_configure(config):
    config.addinivalue_line("markers", "incremental: steps that build on each other")

"""Fixtures of the HTTP/JSON suite: one `agentshare serve` for the session
(see server.py), and the incremental steps of a story."""

import os

import pytest
from server import Server


def binary():
    path = os.environ.get("AGENTSHARE_BIN")
    assert path, "set AGENTSHARE_BIN to the agentshare binary (tests/clients/run does)"
    return path


@pytest.fixture(scope="session")
def server():
    running = Server(binary())
    yield running
    running.stop()


@pytest.fixture(scope="session")
def start_server():
    """Starts more servers with their own settings; stops them at the end."""
    started = []

    def start(env):
        running = Server(binary(), env=env)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


# A story's steps build on each other: once one fails, the later ones are
# reported as expected failures of that step rather than as noise.
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

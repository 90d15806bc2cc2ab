"""Fixtures of the HTTP/JSON suite: one `agentshare serve` for the session
(see server.py), and the incremental steps of a story."""

import pytest
from serve import EXTERNAL_GATEWAY, agentshare_binary
from server import Server

# A story's steps build on each other (see tests/clients/support).
pytest_plugins = ["story_steps"]


@pytest.fixture(scope="session")
def server():
    running = Server(agentshare_binary())
    yield running
    running.stop()


@pytest.fixture(scope="session")
def start_server():
    """Starts more servers with their own settings; stops them at the end."""
    started = []

    def start(env):
        if EXTERNAL_GATEWAY:
            pytest.skip("needs a server of its own settings; AGENTSHARE_GATEWAY names a running one")
        running = Server(agentshare_binary(), env=env)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()

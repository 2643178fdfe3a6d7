"""The real test PBX for end-to-end tests: Asterisk 22 in its debootstrapped root, started
once per test session on 127.0.0.1 and stopped at the end, also when tests fail.

A missing or broken PBX fails these tests with the setup's message; they never skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testpbx.__main__ import prepare
from testpbx.asterisk import Asterisk
from testpbx.errors import SetupError
from testpbx.paths import REPO, Paths
from testpbx.sipp import Sipp

TEST_STATE = REPO / "var" / "test-pbx"


@pytest.fixture(scope="session")
def pbx_paths() -> Paths:
    cache = Path(os.environ.get("IVR_TESTPBX_CACHE", "/var/cache/ivr-testpbx"))
    return Paths(cache=cache, state=TEST_STATE)


@pytest.fixture(scope="session")
def pbx(pbx_paths: Paths) -> Iterator[Asterisk]:
    try:
        asterisk = prepare(pbx_paths)
        asterisk.start()
    except SetupError as exc:
        pytest.fail(f"the end-to-end tests need the test PBX, which could not start:\n{exc}",
                    pytrace=False)
    try:
        yield asterisk
    finally:
        asterisk.stop()


@pytest.fixture(scope="session")
def sipp(pbx: Asterisk, pbx_paths: Paths) -> Sipp:
    return Sipp(pbx_paths, pbx=f"127.0.0.1:{pbx.settings.pbx.sip_port}")

"""Unit tests: no PBX, no database, no network.

Every test runs in its own empty working directory with no ``IVR_*`` variable in the
environment, so an ``ivr.toml`` or an ``IVR_ARI__PASSWORD`` on the developer's machine
cannot change what the tests see. ``/etc/ivr/ivr.toml`` is taken out of the search too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import ivr.settings
from ivr.settings import Settings


@pytest.fixture(autouse=True)
def isolated_settings_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("IVR_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(ivr.settings, "CONFIG_CANDIDATES", (Path("ivr.toml"),))


@pytest.fixture
def test_settings() -> Settings:
    """The defaults (POLICY.md's) in test mode, where the test PBX's secrets are allowed."""
    return Settings(mode="test")

"""The recording store's settings (``[recordings.store]``) fail closed, and the locations a
recording is stored at read back as they were written. No database, no network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ivr.recordings.directory import DirectoryStore
from ivr.recordings.files import RecordingFiles, build_store
from ivr.recordings.location import (
    BadLocation,
    FileLocation,
    S3Location,
    file_location,
    parse,
    s3_location,
    store_key,
)
from ivr.recordings.s3 import S3Store, from_base64, to_base64
from ivr.recordings.store import StoreError
from ivr.settings import DirectoryStoreSettings, S3StoreSettings, Settings

REAL: dict[str, Any] = {
    "ari": {"password": "a-real-ari-password"},
    "ami": {"secret": "a-real-ami-secret"},
    "database": {"url": "postgresql+psycopg://ivr:a-real-db-password@db.internal:5432/ivr"},
}


def s3(**changes: Any) -> dict[str, Any]:
    return {"kind": "s3", "endpoint_url": "https://s3.example.internal", "bucket": "ivr-rec",
            "access_key_id": "AKIAREAL", "secret_access_key": "a-real-s3-secret"} | changes


def production(store: dict[str, Any]) -> Settings:
    return Settings(**REAL, recordings={"store": store})


def test_the_default_store_is_a_local_directory() -> None:
    settings = Settings(mode="test")
    assert settings.recordings.store == DirectoryStoreSettings(
        path=Path("/var/lib/ivr/recordings"))
    assert isinstance(build_store(settings.recordings), DirectoryStore)


def test_a_directory_store_needs_no_kind(tmp_path: Path) -> None:
    settings = Settings(mode="test", recordings={"store": {"path": tmp_path}})
    assert settings.recordings.store == DirectoryStoreSettings(path=tmp_path)


def test_the_toml_file_selects_the_s3_store(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ivr.toml").write_text(
        'mode = "test"\n[recordings.store]\nkind = "s3"\nbucket = "ivr-rec"\n'
        'endpoint_url = "http://127.0.0.1:9000"\nprefix = "calls/"\n'
        'access_key_id = "ivr-test-s3"\nsecret_access_key = "ivr-test-s3"\n')
    monkeypatch.setenv("IVR_CONFIG", str(tmp_path / "ivr.toml"))
    store = Settings().recordings.store
    assert isinstance(store, S3StoreSettings)
    assert (store.bucket, store.prefix, store.region) == ("ivr-rec", "calls/", "us-east-1")
    assert isinstance(build_store(Settings().recordings), S3Store)
    assert "ivr-test-s3" not in Settings().model_dump_json()  # secrets never shown


@pytest.mark.parametrize("store, problem", [
    ({"kind": "s3", "bucket": "ivr-rec"}, "access_key_id"),
    (s3(secret_access_key=""), "must not be empty"),
    (s3(bucket="Not_A_Bucket"), "bucket"),
    (s3(prefix="/abs"), "prefix"),
    (s3(prefix="calls"), "prefix"),  # a prefix ends with /
    (s3(endpoint_url="ftp://x"), "endpoint_url"),
    (s3(colour="blue"), "colour"),  # a typo is refused, never ignored
    ({"kind": "nfs", "path": "/x"}, "nfs"),
    ({"path": "/x", "bucket": "ivr-rec"}, "bucket"),
])
def test_bad_store_settings_are_refused(store: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(mode="test", recordings={"store": store})


def test_production_refuses_the_test_s3_secret() -> None:
    with pytest.raises(ValidationError, match=r"recordings\.store\.secret_access_key"):
        production(s3(secret_access_key="ivr-test-s3"))
    assert production(s3()).recordings.store.kind == "s3"


def test_production_refuses_plain_http_to_another_host() -> None:
    with pytest.raises(ValidationError, match="use https"):
        production(s3(endpoint_url="http://minio.internal:9000"))
    for local in ("http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000"):
        assert production(s3(endpoint_url=local)).recordings.store.kind == "s3"
    assert Settings(mode="test", recordings={"store": s3(
        endpoint_url="http://minio.internal:9000")}).recordings.store.kind == "s3"


def test_settle_seconds_are_bounded() -> None:
    assert Settings(mode="test").recordings.settle_seconds == 30
    with pytest.raises(ValidationError, match="settle_seconds"):
        Settings(mode="test", recordings={"settle_seconds": -1})


# locations ---------------------------------------------------------------------------------

def test_locations_read_back_as_written() -> None:
    path = Path("/var/lib/ivr/recordings/2026/11/23/a b.wav")
    assert parse(file_location(path)) == FileLocation(path)
    assert parse(s3_location("ivr-rec", "calls/2026/11/23/a.wav")) == S3Location(
        "ivr-rec", "calls/2026/11/23/a.wav")


@pytest.mark.parametrize("bad", ["/var/x.wav", "file://relative/x", "file:///a/../b",
                                 "s3://bucket-only", "s3:///key", "http://x/y"])
def test_unknown_or_odd_locations_are_refused(bad: str) -> None:
    with pytest.raises(BadLocation):
        parse(bad)


def test_the_store_key_is_the_utc_day_and_the_file_name() -> None:
    late_evening = datetime(2026, 11, 23, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    assert store_key("c1.wav", late_evening) == "2026/11/24/c1.wav"
    assert store_key("c1.wav", datetime(2026, 1, 2, tzinfo=UTC)) == "2026/01/02/c1.wav"
    for bad in ("../x.wav", "a/b.wav", ".hidden", ""):
        with pytest.raises(BadLocation):
            store_key(bad, datetime(2026, 1, 2, tzinfo=UTC))


def test_s3_checksums_are_base64_of_the_sha256() -> None:
    digest = "ab" * 32
    assert from_base64(to_base64(digest)) == digest


def test_an_s3_location_without_an_s3_store_says_how_to_fix_it(tmp_path: Path) -> None:
    files = RecordingFiles(tmp_path, DirectoryStore(tmp_path / "store"))
    with pytest.raises(StoreError, match='configure kind = "s3"'):
        files.open("s3://ivr-rec/calls/x.wav")
    assert files.spool_location("x.wav") == f"file://{tmp_path}/x.wav"

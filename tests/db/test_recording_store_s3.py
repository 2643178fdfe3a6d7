"""The recording store in an S3-compatible bucket, against a real S3 server on 127.0.0.1
(moto in server mode, started by the test): a finished recording is uploaded with its
SHA-256, the bucket holds the same bytes and that checksum, the spool copy goes; the
deletion job (rule 6) removes the object and every version of it; the trainer's page and
purpose-bound access (rule 7) read it from the bucket; an unreachable store keeps the
spool copy.
"""

from __future__ import annotations

import base64
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from ivr.recordings.s3 import S3Store
from ivr.settings import S3StoreSettings
from ivr.store.audit import AuditLog
from ivr.store.callbacks import Callbacks
from ivr.store.recordings import RecordingAccess
from ivr.web.app import COOKIE, create_app, templates
from ivr.web.auth import Sessions, Users
from ivr.web.console import Console

from .conftest import OwnDatabase
from .recording_store_env import (
    Node,
    add_recording,
    assert_audit_intact,
    audit_entries,
    certificates,
    migrated,
    node,
    row,
)

pytestmark = pytest.mark.db

ENDED = datetime.now(UTC) - timedelta(minutes=5)
SECRET = "ivr-test-s3"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, for this module; stopped at its end."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def client(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=SECRET,
        aws_secret_access_key=SECRET)


def s3_settings(endpoint: str, bucket: str) -> dict[str, Any]:
    return {"kind": "s3", "endpoint_url": endpoint, "bucket": bucket, "region": "us-east-1",
            "access_key_id": SECRET, "secret_access_key": SECRET, "prefix": "calls/",
            "addressing_style": "path"}


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"ivr-rec-{uuid.uuid4().hex[:12]}"
    client(s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
async def a(own_database: OwnDatabase, isolated: None, tmp_path: Path, s3_endpoint: str,
            bucket: str) -> AsyncIterator[Node]:
    async with migrated(own_database) as url, node(
            url, "node-a", tmp_path / "spool", s3_settings(s3_endpoint, bucket)) as n:
        yield n


def key_of(started: datetime, file_name: str) -> str:
    return f"calls/{started:%Y/%m/%d}/{file_name}"


async def test_a_recording_moved_to_s3_has_its_bytes_and_sha256_in_the_bucket(
        a: Node, s3_endpoint: str, bucket: str) -> None:
    made = await add_recording(a, ended=ENDED)
    now = datetime.now(UTC)

    report = await a.move_job().run_once(now)

    assert (report.moved, report.failed) == (1, 0), report.errors
    assert not made.path.exists()
    key = key_of(made.started_at, made.file_name)
    s3 = client(s3_endpoint)
    obj = s3.get_object(Bucket=bucket, Key=key)
    assert obj["Body"].read() == made.data
    assert obj["ContentType"] == "audio/wav"
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(made.sha256)).decode()
    assert head["ContentLength"] == len(made.data)
    recording = await row(a, made)
    assert recording.stored_location == f"s3://{bucket}/{key}"
    assert (recording.sha256, recording.size_bytes) == (made.sha256, len(made.data))
    [entry] = await audit_entries(a, "recording_stored")
    assert entry.details["location"] == f"s3://{bucket}/{key}"


async def test_rule_6_deletion_removes_the_object_and_every_version_of_it(
        a: Node, s3_endpoint: str, bucket: str) -> None:
    s3 = client(s3_endpoint)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    now = datetime.now(UTC)
    made = await add_recording(a, ended=ENDED, expires=now + timedelta(minutes=1))
    kept = await add_recording(a, ended=ENDED)
    assert (await a.move_job().run_once(now)).moved == 2
    key = key_of(made.started_at, made.file_name)
    # An earlier version of the same key (a retried upload) must go too.
    s3.put_object(Bucket=bucket, Key=key, Body=made.data)
    assert len(s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]) == 2

    report = await a.deletion_job().run_once(now + timedelta(minutes=2))

    assert (report.deleted, report.failed) == (1, 0), report.errors
    versions = s3.list_object_versions(Bucket=bucket, Prefix=key)
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key=key)
    kept_key = key_of(kept.started_at, kept.file_name)
    assert s3.get_object(Bucket=bucket, Key=kept_key)["Body"].read() == kept.data
    [certificate] = await certificates(a)
    assert certificate.location == f"s3://{bucket}/{key}"
    assert certificate.file_sha256 == made.sha256 and certificate.file_existed is True
    await assert_audit_intact(a)


async def test_rule_7_a_recording_in_s3_is_handed_out_for_evidence(a: Node,
                                                                   tmp_path: Path) -> None:
    made = await add_recording(a, ended=ENDED)
    assert (await a.move_job().run_once(datetime.now(UTC))).moved == 1
    out = tmp_path / "evidence.wav"
    await RecordingAccess(a.db, a.settings, AuditLog(a.db), a.files()).get(
        made.id, "evidence", "dpo", out, datetime.now(UTC))
    assert out.read_bytes() == made.data


async def test_rule_7_the_trainer_plays_a_sales_recording_from_s3_and_it_is_audited(
        a: Node) -> None:
    made = await add_recording(a, ended=ENDED)
    assert (await a.move_job().run_once(datetime.now(UTC))).moved == 1
    audit = AuditLog(a.db)
    users, sessions = Users(a.db, audit), Sessions(a.db)
    trainer = await users.add("tina.t", "korenček-42-modri", "trainer")
    token, _ = await sessions.create(trainer)
    console = Console(a.settings, a.db, audit, users, sessions,
                      Callbacks(a.db, a.settings.callbacks.window_minutes), templates())
    transport = httpx.ASGITransport(app=create_app(console))
    async with httpx.AsyncClient(transport=transport, base_url="http://console",
                                 cookies={COOKIE: token}) as http:
        response = await http.get(f"/trainer/recordings/{made.id}/audio")

    assert response.status_code == 200
    assert response.content == made.data
    assert response.headers["content-type"] == "audio/wav"
    [entry] = await audit_entries(a, "recording_accessed")
    assert entry.actor == "tina.t" and entry.subject_id == str(made.id)
    assert entry.details == {"purpose": "training", "via": "console"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_unreachable_store_keeps_the_spool_copy_and_says_why(
        a: Node, tmp_path: Path, bucket: str) -> None:
    made = await add_recording(a, ended=ENDED)
    store = a.settings.recordings.store
    assert isinstance(store, S3StoreSettings)
    unreachable = S3Store(store.model_copy(
        update={"endpoint_url": f"http://127.0.0.1:{closed_port()}"}))

    report = await a.move_job(unreachable).run_once(datetime.now(UTC))

    assert (report.moved, report.failed) == (0, 1)
    assert made.path.read_bytes() == made.data
    recording = await row(a, made)
    assert recording.stored_at is None and recording.store_attempts == 1
    assert recording.store_error is not None and "S3 upload to" in recording.store_error
    assert SECRET not in recording.store_error

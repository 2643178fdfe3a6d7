"""The recording store as a bucket of an S3-compatible object store, through boto3 (the
``s3`` extra). The SHA-256 goes with the upload (``ChecksumSHA256``): the store refuses
bytes that do not match what was read from the spool, and its own checksum of the stored
object is what verifies the copy. Deleting removes every version of the object, so a
versioned bucket keeps nothing of a deleted recording.

Every method blocks (boto3): the jobs and the console call them in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path
from typing import Any

from ivr.recordings.local import CHUNK, sha256_of
from ivr.recordings.location import S3Location, parse, s3_location
from ivr.recordings.store import Readable, StoredCopy, StoreError
from ivr.settings import S3StoreSettings

CONTENT_TYPES = {".wav": "audio/wav", ".gsm": "audio/x-gsm", ".WAV": "audio/wav"}
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


def to_base64(sha256_hex: str) -> str:
    """>>> to_base64("00" * 32)
    'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='
    """
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


def from_base64(checksum: str) -> str:
    return base64.b64decode(checksum).hex()


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class S3Store:
    kind = "s3"

    def __init__(self, settings: S3StoreSettings, client: Any = None) -> None:
        self.settings = settings
        self._client = client
        self._lock = threading.Lock()

    # the client --------------------------------------------------------------------------
    def client(self) -> Any:
        """The boto3 client, made at first use (thread-safe; clients are, sessions not)."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise StoreError("[recordings.store] kind = \"s3\" needs boto3: install the "
                             "s3 extra (pip install 'ivr[s3]')") from None
        s = self.settings
        return boto3.session.Session().client(
            "s3", endpoint_url=s.endpoint_url, region_name=s.region,
            aws_access_key_id=s.access_key_id.get_secret_value(),
            aws_secret_access_key=s.secret_access_key.get_secret_value(),
            config=Config(s3={"addressing_style": s.addressing_style},
                          retries={"max_attempts": 3, "mode": "standard"},
                          connect_timeout=5, read_timeout=60))

    def _call(self, what: str, location: str, method: str, **kwargs: Any) -> Any:
        """One S3 request; its failures become :class:`StoreError` (``FileNotFoundError``
        for a missing object), never a secret in the message."""
        try:
            return getattr(self.client(), method)(**kwargs)
        except StoreError:
            raise
        except Exception as exc:
            code = _code(exc)
            if code in NOT_FOUND:
                raise FileNotFoundError(f"{location}: no such object") from None
            reason = code or type(exc).__name__
            message = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise StoreError(f"S3 {what} {location}: {reason}: {message}") from None

    def _where(self, location: str) -> S3Location:
        parsed = parse(location)
        if not isinstance(parsed, S3Location):
            raise StoreError(f"{location[:120]} is not in an S3 bucket")
        return parsed

    # the store ---------------------------------------------------------------------------
    def location(self, key: str) -> str:
        return s3_location(self.settings.bucket, self.settings.prefix + key)

    def put(self, source: Path, key: str) -> StoredCopy:
        location = self.location(key)
        where = self._where(location)
        sha256, size = sha256_of(source)
        extra: dict[str, Any] = {}
        if self.settings.server_side_encryption is not None:
            extra["ServerSideEncryption"] = self.settings.server_side_encryption
        with source.open("rb") as body:
            # The store checks the bytes it receives against this hash (BadDigest if the
            # file changed since it was read).
            self._call("upload to", location, "put_object", Bucket=where.bucket,
                       Key=where.key, Body=body, ContentLength=size,
                       ChecksumAlgorithm="SHA256", ChecksumSHA256=to_base64(sha256),
                       ContentType=CONTENT_TYPES.get(source.suffix, "application/octet-stream"),
                       **extra)
        return StoredCopy(location, sha256, size)

    def checksum(self, location: str) -> str | None:
        where = self._where(location)
        try:
            head = self._call("checksum of", location, "head_object", Bucket=where.bucket,
                              Key=where.key, ChecksumMode="ENABLED")
        except FileNotFoundError:
            return None
        stored = head.get("ChecksumSHA256")
        if isinstance(stored, str) and "-" not in stored:
            return from_base64(stored)
        return self._download_hash(location)  # no full-object checksum kept: read it back

    def _download_hash(self, location: str) -> str | None:
        try:
            reader = self.open(location)
        except FileNotFoundError:
            return None
        digest = hashlib.sha256()
        try:
            for block in iter(lambda: reader.read(CHUNK), b""):
                digest.update(block)
        finally:
            reader.close()
        return digest.hexdigest()

    def open(self, location: str) -> Readable:
        where = self._where(location)
        response = self._call("read of", location, "get_object", Bucket=where.bucket,
                              Key=where.key)
        body: Readable = response["Body"]
        return body

    def delete(self, location: str) -> str | None:
        where = self._where(location)
        sha256 = self.checksum(location)
        self._call("deletion of", location, "delete_object", Bucket=where.bucket,
                   Key=where.key)
        # A versioned bucket keeps the old versions (and now a delete marker): remove
        # every version of this key, so nothing of the recording stays.
        pages = self._call("version listing of", location, "list_object_versions",
                           Bucket=where.bucket, Prefix=where.key)
        while True:
            for version in [*pages.get("Versions", []), *pages.get("DeleteMarkers", [])]:
                if version.get("Key") != where.key:
                    continue
                self._call("deletion of a version of", location, "delete_object",
                           Bucket=where.bucket, Key=where.key,
                           VersionId=version["VersionId"])
            if not pages.get("IsTruncated"):
                return sha256
            pages = self._call("version listing of", location, "list_object_versions",
                               Bucket=where.bucket, Prefix=where.key,
                               KeyMarker=pages.get("NextKeyMarker"),
                               VersionIdMarker=pages.get("NextVersionIdMarker"))

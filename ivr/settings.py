"""One settings object for the whole service.

Sources, strongest first: environment variables (prefix ``IVR_``, nested with ``__``, e.g.
``IVR_ARI__PASSWORD``), then a TOML file, then the defaults below, which are POLICY.md's.
The file is ``$IVR_CONFIG`` if set, else ``./ivr.toml``, else ``/etc/ivr/ivr.toml``.

Settings fail closed: outside test mode the well-known test secrets are refused.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Address
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ivr.policy.lines import LineKind, LineRef
from ivr.policy.numbers import InvalidNumber, to_e164

CONFIG_ENV = "IVR_CONFIG"
CONFIG_CANDIDATES = (Path("ivr.toml"), Path("/etc/ivr/ivr.toml"))

# Secrets that ship with the test PBX. They work in test mode and nowhere else.
TEST_SECRETS = frozenset({"ivr-test-ari", "ivr-test-ami", "ivr-test-agent", "ivr-test-db",
                          "ivr-test-s3"})

_NODE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_CONTEXT = r"^[A-Za-z0-9_-]{1,64}$"
Seconds = Annotated[float, Field(gt=0, le=120)]


FaultPoint = Literal["question", "before_recording"]


def _hostname() -> str:
    import socket

    return socket.gethostname()[:63] or "node"


class Section(BaseModel):
    """A section of the settings: unknown keys (typos) are refused, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LineSettings(Section):
    """A line of the call centre: its numbers, its kind, its queue and its notice."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    kind: LineKind
    numbers: list[str] = Field(min_length=1)
    queue: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    notice: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")

    @field_validator("numbers")
    @classmethod
    def _numbers_e164(cls, numbers: list[str]) -> list[str]:
        try:
            return [to_e164(n) for n in numbers]
        except InvalidNumber as exc:
            raise ValueError(str(exc)) from None

    def ref(self) -> LineRef:
        return LineRef(name=self.name, kind=self.kind, queue=self.queue, notice=self.notice)


def _default_lines() -> list[LineSettings]:
    return [
        LineSettings(
            name="sales", kind=LineKind.SALES, numbers=["040404045"], queue="sales",
            notice="sales",
        ),
        LineSettings(
            name="service", kind=LineKind.SERVICE, queue="service", notice="service",
            numbers=["040404040", "040404030", "040404085", "040404042", "040404066",
                     "040404041"],
        ),
    ]


class AriSettings(Section):
    url: str = "http://127.0.0.1:8088"
    username: str = "ivr"
    password: SecretStr = SecretStr("ivr-test-ari")
    app: str = Field(default="ivr", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # Below Asterisk's http.conf sessionlimit (100 by default).
    max_connections: int = Field(default=40, ge=1, le=90)
    reconnect_max_seconds: Seconds = 10.0


class AmiSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=5038, ge=1, le=65535)
    username: str = "ivr"
    secret: SecretStr = SecretStr("ivr-test-ami")
    # Connections of their own that start recordings (events off), besides the first,
    # which takes the events and every other action; 0: the first does it all.
    recording_connections: int = Field(default=2, ge=0, le=8)


class DatabaseSettings(Section):
    url: SecretStr = SecretStr("postgresql+psycopg://ivr:ivr-test-db@127.0.0.1:5432/ivr")
    pool_size: int = Field(default=10, ge=1, le=100)

    def password(self) -> str | None:
        from sqlalchemy.engine import make_url

        return make_url(self.url.get_secret_value()).password


class ConsentSettings(Section):
    """Rule 2: how long the question waits for 1 or 2, and how often it is asked again."""

    answer_timeout: Seconds = 5.0
    question_repeats: int = Field(default=1, ge=0, le=5)


class RetentionSettings(Section):
    """Rule 6: months a recording is kept, by legal basis."""

    legal_basis_months: int = Field(default=6, ge=1, le=120)
    consent_months: int = Field(default=6, ge=1, le=120)


class CallbackSettings(Section):
    """Rule 4: missed calls are returned within this window."""

    window_minutes: int = Field(default=60, ge=1, le=24 * 60)
    overload_callers_per_agent: float = Field(default=3.0, gt=0)
    retry_attempts: int = Field(default=3, ge=1, le=20)
    retry_delay_minutes: int = Field(default=10, ge=1, le=24 * 60)
    # Placing a callback: the agent's phone rings first, then the customer through the
    # outbound trunk (a PJSIP endpoint of the site).
    trunk: str = Field(default="carrier", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    dial_format: Literal["national", "e164"] = "national"
    agent_ring_seconds: int = Field(default=30, ge=5, le=300)
    customer_ring_seconds: int = Field(default=30, ge=5, le=300)


class RevocationSettings(Section):
    """Rule 8: deletion deadline in working days of this country's calendar."""

    working_days: int = Field(default=5, ge=1, le=60)
    calendar_country: str = Field(default="SI", pattern=r"^[A-Z]{2}$")


class DirectoryStoreSettings(Section):
    """The recording store as a local directory (a mounted volume, an NFS share...)."""

    kind: Literal["directory"] = "directory"
    path: Path = Path("/var/lib/ivr/recordings")


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class S3StoreSettings(Section):
    """The recording store as a bucket of an S3-compatible object store (needs the ``s3``
    extra: ``pip install 'ivr[s3]'``)."""

    kind: Literal["s3"]
    # None: the provider's default endpoint for the region.
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{1,32}$")
    access_key_id: SecretStr
    secret_access_key: SecretStr
    prefix: str = Field(default="", pattern=r"^([A-Za-z0-9._-]+/)*$")
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    server_side_encryption: Literal["AES256", "aws:kms"] | None = None

    @field_validator("access_key_id", "secret_access_key")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    def plain_http(self) -> bool:
        """True when the endpoint is plain HTTP to another host (the recordings would
        cross the network unencrypted)."""
        if self.endpoint_url is None or not self.endpoint_url.startswith("http://"):
            return False
        host = self.endpoint_url.removeprefix("http://").split("/", 1)[0]
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return host not in _LOOPBACK_HOSTS


def _store_kind(value: object) -> object:
    """The store's ``kind``; a directory when not given."""
    if isinstance(value, dict):
        return value.get("kind", "directory")
    return getattr(value, "kind", "directory")


RecordingStoreSettings = Annotated[
    Annotated[DirectoryStoreSettings, Tag("directory")] | Annotated[S3StoreSettings, Tag("s3")],
    Discriminator(_store_kind)]


class RecordingSettings(Section):
    """Where MixMonitor writes (as Asterisk sees it) and where the service finds the files;
    the store finished recordings are moved to (``[recordings.store]``), and how long after
    the call ended a file counts as closed by MixMonitor."""

    asterisk_dir: Path = Path("/var/spool/asterisk/ivr-recordings")
    local_dir: Path = Path("/var/spool/asterisk/ivr-recordings")
    format: Literal["wav", "wav49", "gsm"] = "wav"
    store: RecordingStoreSettings = DirectoryStoreSettings()
    settle_seconds: int = Field(default=30, ge=0, le=3600)


class PromptSettings(Section):
    """Where the notices live: the manifest and audio as the service sees them, and the
    sound name prefix Asterisk plays them by (``sound:ivr/<id>``)."""

    local_dir: Path = Path("/usr/share/asterisk/sounds/ivr")
    sound_prefix: str = Field(default="ivr", pattern=r"^[A-Za-z0-9_/-]{1,64}$")


class UnattendedSettings(Section):
    """Calls the dialplan sent to the queue while no service instance ran (Stasis failed):
    Asterisk notes each in a file here when it ends (as Asterisk sees the directory, and
    as the service does); the service records them when it runs again (rule 4)."""

    asterisk_dir: Path = Path("/var/spool/asterisk/ivr-unattended")
    local_dir: Path = Path("/var/spool/asterisk/ivr-unattended")


class JournalSettings(Section):
    """Where call records wait, fsynced, while PostgreSQL cannot be reached; how long a
    write may wait for PostgreSQL before it goes there, and how often a replay is tried."""

    directory: Path = Path("/var/lib/ivr/journal")
    store_timeout: Seconds = 2.0
    replay_seconds: Seconds = 2.0


class FastAgiSettings(Section):
    """Where the dialplan asks the service for decisions: the FastAGI server (whether a
    desk-phone call returns a missed one; the notice's decision with ``[dialplan]
    decision_request = "fastagi"``) and, on ``report_port``, the HTTP listener for the
    notice's decision (``CURL()``, ``decision_request = "http"``)."""

    bind_address: IPv4Address = IPv4Address("127.0.0.1")
    port: int = Field(default=4573, ge=1, le=65535)
    report_port: int = Field(default=4574, ge=1, le=65535)
    # Where Asterisk connects from, besides this host's loopback and ``bind_address``
    # (Asterisk on the same host). Any other peer is refused before it is read: what it
    # would report is a forged consent receipt.
    asterisk_addresses: list[IPv4Address] = Field(default_factory=list, max_length=16)

    def allowed_peers(self) -> frozenset[str]:
        return frozenset({"127.0.0.1", str(self.bind_address),
                          *map(str, self.asterisk_addresses)})

    @model_validator(mode="after")
    def _a_port_each(self) -> Self:
        if self.report_port == self.port:
            raise ValueError(f"report_port {self.report_port} is FastAGI's port too: the two "
                             "listeners need a port each")
        return self


class WebSettings(Section):
    """The web console for agents, the DPO and trainers."""

    enabled: bool = True
    bind_address: IPv4Address = IPv4Address("127.0.0.1")
    port: int = Field(default=8080, ge=1, le=65535)
    session_hours: int = Field(default=8, ge=1, le=24)
    secure_cookies: bool = False  # set true behind TLS


class JobsSettings(Section):
    """The deadline jobs inside ``ivr serve`` (``ivr jobs run-once`` for cron)."""

    interval_seconds: int = Field(default=300, ge=5, le=24 * 3600)
    enabled: bool = True
    # How often calls an earlier instance left open are looked for (closed once ended).
    sweep_seconds: int = Field(default=30, ge=1, le=3600)


class DialplanSettings(Section):
    """Dialplan contexts the service hands calls to, and who plays the inbound notice:
    ``ari`` (the service, over ARI: every playback and digit is an event it follows) or
    ``dialplan`` (the dialplan plays the notice and collects the digit, then asks the
    service to store the decision before any recording; the PBX's capacity
    for the flow is nearly the dialplan's own, see README "Capacity")."""

    inbound_flow: Literal["ari", "dialplan"] = "ari"
    # In the dialplan flow, who starts MixMonitor once the service has stored a decision
    # that allows a recording: ``ami`` (the service, over AMI, before it answers the
    # dialplan, so the recording does not wait for the channel's own turn on a busy PBX;
    # if AMI is down or refuses, the dialplan starts it) or ``dialplan`` (always the
    # dialplan, after the answer).
    recording_start: Literal["ami", "dialplan"] = "ami"
    # How the dialplan flow's dialplan asks for the notice's decision: ``http`` (Asterisk's
    # ``CURL()``, func_curl: the report in one write) or ``fastagi`` (``AGI()``: Asterisk
    # writes its header a line at a time; for a PBX without func_curl). Rendered into the
    # dialplan; the service answers both.
    decision_request: Literal["http", "fastagi"] = "http"
    queue_context: str = Field(default="ivr-queues", pattern=_CONTEXT)
    unconfigured_context: str = Field(default="ivr-unconfigured", pattern=_CONTEXT)
    queue_max_wait: int = Field(default=300, ge=1, le=3600)


class SchedulingSettings(Section):
    """The service's CPU priority. ``realtime_priority`` 1-99 runs ``ivr serve`` at
    SCHED_RR with that priority, so that a decision a caller waits for is not queued
    behind a saturated PBX's threads (docs/operations.md, "CPU priority"); 0 (the
    default) leaves the normal scheduling."""

    realtime_priority: int = Field(default=0, ge=0, le=99)


class PbxSettings(Section):
    """Where the PBX listens, used to render its configuration (asterisk-conf/)."""

    bind_address: IPv4Address = IPv4Address("127.0.0.1")
    sip_port: int = Field(default=5060, ge=1, le=65535)
    rtp_start: int = Field(default=10000, ge=1024, le=65535)
    rtp_end: int = Field(default=20000, ge=1024, le=65535)
    # The address the service connects to AMI from; AMI refuses every other.
    service_address: IPv4Address = IPv4Address("127.0.0.1")


class Settings(BaseSettings):
    """Everything configurable. Build it with :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="IVR_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    mode: Literal["production", "test"] = "production"
    # This service instance and its Asterisk: a restart closes only this node's calls.
    node: str = Field(default_factory=lambda: _hostname(), pattern=_NODE)
    # Test mode only: hold the call flow at this point so a test can kill the service there.
    fault_point: FaultPoint | None = None
    timezone: str = "Europe/Ljubljana"
    region: str = Field(default="SI", pattern=r"^[A-Z]{2}$")
    lines: list[LineSettings] = Field(default_factory=_default_lines, min_length=1)
    ari: AriSettings = AriSettings()
    ami: AmiSettings = AmiSettings()
    database: DatabaseSettings = DatabaseSettings()
    consent: ConsentSettings = ConsentSettings()
    retention: RetentionSettings = RetentionSettings()
    callbacks: CallbackSettings = CallbackSettings()
    revocations: RevocationSettings = RevocationSettings()
    recordings: RecordingSettings = RecordingSettings()
    prompts: PromptSettings = PromptSettings()
    dialplan: DialplanSettings = DialplanSettings()
    pbx: PbxSettings = PbxSettings()
    scheduling: SchedulingSettings = SchedulingSettings()
    fastagi: FastAgiSettings = FastAgiSettings()
    journal: JournalSettings = JournalSettings()
    unattended: UnattendedSettings = UnattendedSettings()
    jobs: JobsSettings = JobsSettings()
    web: WebSettings = WebSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _numbers_unique(self) -> Self:
        seen: dict[str, str] = {}
        names: set[str] = set()
        for line in self.lines:
            if line.name in names:
                raise ValueError(f"line name {line.name!r} is configured twice")
            names.add(line.name)
            for number in line.numbers:
                if number in seen:
                    raise ValueError(
                        f"number {number} is on two lines: {seen[number]!r} and {line.name!r}"
                    )
                seen[number] = line.name
        return self

    @model_validator(mode="after")
    def _no_test_secrets_in_production(self) -> Self:
        if self.mode == "test":
            return self
        if self.fault_point is not None:
            raise ValueError("fault_point is for the fault-injection tests: test mode only")
        offending = [
            name
            for name, value in (
                ("ari.password", self.ari.password.get_secret_value()),
                ("ami.secret", self.ami.secret.get_secret_value()),
                ("database.url password", self.database.password() or ""),
                *self._store_secrets(),
            )
            if value in TEST_SECRETS
        ]
        if offending:
            raise ValueError(
                "production mode refuses the test PBX's default secrets for "
                + ", ".join(offending)
                + ": set real ones (e.g. IVR_ARI__PASSWORD) or set mode = \"test\""
            )
        store = self.recordings.store
        if isinstance(store, S3StoreSettings) and store.plain_http():
            raise ValueError("recordings.store.endpoint_url: production mode refuses plain "
                             "http to another host (recordings would cross the network "
                             "unencrypted): use https")
        return self

    def _store_secrets(self) -> list[tuple[str, str]]:
        store = self.recordings.store
        if not isinstance(store, S3StoreSettings):
            return []
        return [("recordings.store.secret_access_key", store.secret_access_key.get_secret_value()),
                ("recordings.store.access_key_id", store.access_key_id.get_secret_value())]

    def line_for(self, e164: str) -> LineRef | None:
        """The line a dialled number (already E.164) belongs to, or ``None``."""
        for line in self.lines:
            if e164 in line.numbers:
                return line.ref()
        return None


def config_file() -> Path | None:
    """The settings file in use, or ``None`` when there is none."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"{CONFIG_ENV}={explicit}: no such settings file")
        return path
    for candidate in CONFIG_CANDIDATES:
        if candidate.is_file():
            return candidate
    return None


def get_settings(**overrides: object) -> Settings:
    """Build the settings from the environment and the settings file."""
    return Settings(**overrides)  # type: ignore[arg-type]

"""Render ``asterisk-conf/`` into the configuration a PBX runs.

The files are plain Asterisk configuration with ``@@name@@`` placeholders filled from the
settings; a site directory (the test PBX's, or a production site's) adds the trunk, agents
and queue members. The numbers of the lines are generated into ``extensions_numbers.conf``
so the dialplan and the service always agree on which numbers belong to the application.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from ivr.asterisk.notice_dialplan import context_name, notices_dialplan
from ivr.notices.catalogue import MANIFEST, Catalogue, CatalogueError, load_catalogue, load_manifest
from ivr.policy.numbers import dialled_forms
from ivr.settings import Settings

PLACEHOLDER = re.compile(r"@@([a-z0-9_]+)@@")
NUMBERS_FILE = "extensions_numbers.conf"
NOTICES_FILE = "extensions_notices.conf"
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "asterisk-conf"


class ConfigError(ValueError):
    """The configuration cannot be rendered: a placeholder without a value, a bad site."""


def placeholder_values(settings: Settings) -> dict[str, str]:
    """The values of the placeholders that come from the settings."""
    ari_url = urlsplit(settings.ari.url)
    return {
        "node": settings.node,
        "bind_address": str(settings.pbx.bind_address),
        "sip_port": str(settings.pbx.sip_port),
        "http_port": str(ari_url.port or 8088),
        "ami_port": str(settings.ami.port),
        "ami_permit": str(settings.pbx.service_address),
        "rtp_start": str(settings.pbx.rtp_start),
        "rtp_end": str(settings.pbx.rtp_end),
        "ari_user": settings.ari.username,
        "ari_password": settings.ari.password.get_secret_value(),
        "ami_user": settings.ami.username,
        "ami_secret": settings.ami.secret.get_secret_value(),
        "ami_read": ("system" if settings.dialplan.inbound_flow == "dialplan"
                     else "agent,system"),
        "app": settings.ari.app,
        "queue_context": settings.dialplan.queue_context,
        "unconfigured_context": settings.dialplan.unconfigured_context,
        "queue_max_wait": str(settings.dialplan.queue_max_wait),
        "fastagi": f"{settings.fastagi.bind_address}:{settings.fastagi.port}",
        "report_http": f"{settings.fastagi.bind_address}:{settings.fastagi.report_port}",
        "trunk": settings.callbacks.trunk,
        "recordings_dir": str(settings.recordings.asterisk_dir),
        "unattended_dir": str(settings.unattended.asterisk_dir),
        "recording_format": settings.recordings.format,
        "customer_ring_seconds": str(settings.callbacks.customer_ring_seconds),
        "sound_prefix": settings.prompts.sound_prefix,
        "answer_timeout": f"{settings.consent.answer_timeout:g}",
        "question_repeats": str(settings.consent.question_repeats),
    }


def fill(text: str, values: Mapping[str, str], where: str) -> str:
    """Replace every ``@@name@@``; a name without a value is an error naming the file."""
    missing = sorted({m for m in PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise ConfigError(f"{where}: no value for {', '.join('@@' + m + '@@' for m in missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def numbers_dialplan(settings: Settings) -> str:
    """``[ivr-numbers]``: every form of every configured number enters the application
    (``inbound_flow = "ari"``) or the dialplan's own notice (``"dialplan"``, the contexts
    of ``NOTICES_FILE``). When the application is not running (the
    service restarts), Stasis fails at once and the caller goes to the line's queue
    unrecorded (``[ivr-unavailable]``), with the number dialled kept for the note the
    dialplan leaves when the call ends."""
    lines = ["; Generated from the settings by `ivr asterisk-conf render`. Do not edit.",
             "[ivr-numbers]"]
    by_dialplan = settings.dialplan.inbound_flow == "dialplan"
    for line in settings.lines:
        for e164 in line.numbers:
            lines.append(f"; {line.name} ({line.kind}) {e164}")
            for form in dialled_forms(e164):
                if by_dialplan:
                    lines.append(f"exten => {form},1,Set(IVR_DIALLED=${{EXTEN}})")
                    lines.append(f" same => n,Set(IVR_QUEUE={line.queue})")
                    lines.append(f" same => n,Goto({context_name(line.notice)},s,1)")
                    continue
                lines.append(f"exten => {form},1,Stasis({settings.ari.app})")
                lines.append(' same => n,GotoIf($["${STASISSTATUS}" = "FAILED"]'
                             "?unavailable)")
                lines.append(" same => n,Hangup()")
                lines.append(" same => n(unavailable),Set(IVR_DIALLED=${EXTEN})")
                lines.append(f" same => n,Goto(ivr-unavailable,{line.queue},1)")
    return "\n".join(lines) + "\n"


def played_catalogue(settings: Settings) -> Catalogue:
    """The notices the dialplan plays: those of the built prompts (``prompts.local_dir``),
    which the service decides from, else, before any are built, the default catalogue."""
    if not (settings.prompts.local_dir / MANIFEST).is_file():
        return load_catalogue()
    try:
        return load_manifest(settings.prompts.local_dir).catalogue()
    except CatalogueError as exc:
        raise ConfigError(f"the notices' dialplan: {exc}") from None


def render(
    settings: Settings,
    out: Path,
    site: Path,
    extra: Mapping[str, str] | None = None,
    source: Path = DEFAULT_SOURCE,
    also: tuple[Path, ...] = (),
    catalogue: Catalogue | None = None,
) -> list[Path]:
    """Write the rendered configuration into ``out`` (files 0640). Returns the files.
    ``also``: more directories of files to render (the benchmark's baseline)."""
    if not source.is_dir():
        raise ConfigError(f"{source}: no asterisk-conf directory there")
    if not site.is_dir():
        raise ConfigError(f"{site}: no site directory there")
    values = {**placeholder_values(settings), **(extra or {})}
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    texts: dict[str, str] = {}
    for directory in (source, site, *also):
        for path in sorted(directory.glob("*.conf")):
            texts[path.name] = fill(path.read_text(), values, str(path))
    texts[NUMBERS_FILE] = numbers_dialplan(settings)
    texts[NOTICES_FILE] = fill(notices_dialplan(catalogue or played_catalogue(settings),
                                                settings.dialplan.decision_request),
                               values, NOTICES_FILE)
    for name, text in texts.items():
        target = out / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(target, 0o640)
        written.append(target)
    return written

"""What happens to a call entering the application.

Foundation stage: the call is logged with its line and handed to the line's queue without
a recording (the safe side). The notice and consent flow replaces this.
"""

from __future__ import annotations

import logging

from ivr.asterisk.ari import AriClient, AriError
from ivr.asterisk.ari_events import StasisStart
from ivr.calls.router import CallEvents, Handler
from ivr.policy.numbers import InvalidNumber, caller_e164, to_e164
from ivr.settings import Settings

log = logging.getLogger(__name__)


def entry_handler(ari: AriClient, settings: Settings) -> Handler:
    async def handle(start: StasisStart, events: CallEvents) -> None:
        channel = start.channel
        try:
            dialled: str | None = to_e164(channel.exten, settings.region)
        except InvalidNumber:
            dialled = None
        try:
            caller = caller_e164(channel.caller_number, settings.region)
        except InvalidNumber:
            caller = None
        line = settings.line_for(dialled) if dialled else None
        log.info("call entered the application", extra={
            "call": channel.id, "dialled": dialled, "caller": caller or "withheld",
            "line": line.name if line else None})
        try:
            await ari.answer(channel.id)
            if line is None:
                await ari.continue_in_dialplan(channel.id, settings.dialplan.unconfigured_context,
                                               channel.exten)
            else:
                await ari.continue_in_dialplan(channel.id, settings.dialplan.queue_context,
                                               line.queue)
        except AriError as exc:
            log.warning("could not continue the call: %s", exc, extra={"call": channel.id})

    return handle

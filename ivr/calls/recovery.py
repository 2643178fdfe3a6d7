"""After (re)connecting, ARI replays nothing: channels already in the application that no
task owns (the service restarted, or events were lost) are resolved on the safe side.

Such a call continues to its queue without a recording being started for it; a decision
already stored stays as it is, and a recording already running goes on (it has its basis).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ivr.asterisk.ari import AriError
from ivr.calls.router import ChannelVanished
from ivr.policy.numbers import to_e164

if TYPE_CHECKING:
    from ivr.calls.inbound import CallDeps
    from ivr.calls.router import CallRouter

log = logging.getLogger(__name__)

RESTART_REASON = "service restarted: continued unrecorded"


async def resolve_orphans(deps: CallDeps, router: CallRouter) -> int:
    """Hand every ownerless channel in the application to its queue, unrecorded; tell
    every call task whose channel is gone (its hang-up was lost with the connection)."""
    settings = deps.settings
    resolved = 0
    channels = await deps.ari.channels()
    present = {channel.id for channel in channels}
    for channel_id in router.channel_ids():
        if channel_id not in present:
            router.dispatch(ChannelVanished(channel_id))
    for channel in channels:
        if router.has(channel.id) or not channel.in_application(settings.ari.app):
            continue
        try:
            line = settings.line_for(to_e164(channel.exten, settings.region))
        except ValueError:
            line = None
        context, exten = ((settings.dialplan.queue_context, line.queue) if line else
                          (settings.dialplan.unconfigured_context, channel.exten))
        try:
            await deps.ari.set_variable(channel.id, "IVR_RECORDED", "no")
            await deps.ari.continue_in_dialplan(channel.id, context, exten)
        except AriError as exc:
            log.warning("could not resolve a channel left in the application: %s", exc,
                        extra={"call": channel.id})
            continue
        resolved += 1
        try:
            await deps.records.close_orphan(channel.id, RESTART_REASON, datetime.now(UTC))
        except Exception:
            log.exception("could not close the record of a resolved channel",
                          extra={"call": channel.id})
        log.warning("channel left in the application resolved: continued unrecorded",
                    extra={"call": channel.id, "context": context})
    return resolved

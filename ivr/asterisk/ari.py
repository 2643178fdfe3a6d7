"""A thin, typed ARI client: REST calls over kept-alive HTTP/1.1 (ivr/asterisk/http.py),
events over a websocket that reconnects with backoff.

After every (re)connect the event stream yields :class:`Connected`: ARI replays nothing, so
the application lists the channels it owns and resolves them (see the call service).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ivr.asterisk.ari_events import AriEventError, Channel, Event, parse_channel, parse_event
from ivr.asterisk.http import ConnectionRefused, HttpError, HttpPool
from ivr.settings import AriSettings

log = logging.getLogger(__name__)

# The only events the call flows read. Asterisk drops the rest before they are sent (ARI
# application event filter): a channel followed into the queue would otherwise send an
# event for every dialplan step and variable (about twenty variables a call as it leaves
# the queue), each parsed here for nothing. The queue's outcome comes as a user event.
WANTED_EVENTS = ("StasisStart", "StasisEnd", "ChannelDtmfReceived", "ChannelHangupRequest",
                 "ChannelDestroyed", "ChannelUserevent", "PlaybackStarted",
                 "PlaybackContinuing", "PlaybackFinished")


class AriError(RuntimeError):
    """ARI refused a request or could not be reached (``refused``: nothing listens at its
    address, so Asterisk is not running there)."""

    def __init__(self, message: str, status: int | None = None, refused: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.refused = refused


class ChannelGone(AriError):
    """The channel no longer exists (404), or has left the application (409, "Channel not
    in Stasis application": it is hanging up; the flow hands a call on only as its last
    command): the caller hung up."""


# Asterisk's 409 for a channel that has left the application.
LEFT_APPLICATION = "not in Stasis application"


@dataclass(frozen=True, slots=True)
class Connected:
    """The events websocket is (again) connected; ``reconnects`` counts earlier drops."""

    reconnects: int


class AriClient:
    def __init__(self, settings: AriSettings) -> None:
        self.settings = settings
        password = settings.password.get_secret_value()
        self._auth = (settings.username, password)
        self._http = HttpPool(settings.url.rstrip("/") + "/ari", settings.username, password,
                              settings.max_connections)
        # Set while the events websocket is connected (calls reach the application only
        # then); cleared the moment it drops. /healthz reads it.
        self.events_up = asyncio.Event()

    async def aclose(self) -> None:
        await self._http.aclose()

    # REST ---------------------------------------------------------------------------------
    async def request(self, method: str, path: str, params: Mapping[str, Any] | None = None,
                      json: Any = None) -> Any:
        started = asyncio.get_running_loop().time()
        try:
            response = await self._http.request(method, path, params=dict(params or {}),
                                                json=json)
        except HttpError as exc:
            raise AriError(f"ARI {method} {path}: {exc}",
                           refused=isinstance(exc, ConnectionRefused)) from None
        if log.isEnabledFor(logging.DEBUG):
            log.debug("ARI request", extra={
                "method": method, "path": path, "status": response.status,
                "ms": round((asyncio.get_running_loop().time() - started) * 1000, 1)})
        if path.startswith("/channels/"):
            if response.status == 404:
                raise ChannelGone(f"ARI {method} {path}: channel not found", 404)
            if response.status == 409 and LEFT_APPLICATION in response.text:
                raise ChannelGone(f"ARI {method} {path}: channel left the application", 409)
        if response.status >= 400:
            raise AriError(f"ARI {method} {path}: {response.status} "
                           f"{response.text[:200]}", response.status)
        if response.status == 204 or not response.body:
            return None
        try:
            return response.json()
        except ValueError:
            raise AriError(f"ARI {method} {path}: a reply that is not JSON") from None

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/answer")

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self.request("DELETE", f"/channels/{channel_id}", params={"reason": reason})

    async def play(self, channel_id: str, media: str, playback_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/play/{playback_id}",
                           params={"media": media})

    async def stop_playback(self, playback_id: str) -> None:
        await self.request("DELETE", f"/playbacks/{playback_id}")

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/variable",
                           params={"variable": name, "value": value})

    async def get_variable(self, channel_id: str, name: str) -> str | None:
        """A channel variable's value; ``None`` when it is not set (or the channel is
        gone: Asterisk answers 404 to both)."""
        try:
            reply = await self.request("GET", f"/channels/{channel_id}/variable",
                                       params={"variable": name})
        except ChannelGone:
            return None
        value = reply.get("value") if isinstance(reply, dict) else None
        return str(value) if value else None

    async def continue_in_dialplan(self, channel_id: str, context: str, extension: str,
                                   priority: int = 1) -> None:
        await self.request("POST", f"/channels/{channel_id}/continue",
                           params={"context": context, "extension": extension,
                                   "priority": priority})

    async def originate(self, endpoint: str, app: str, channel_id: str, caller_id: str,
                        ring_seconds: int, app_args: str = "") -> None:
        """Call ``endpoint``; when it answers, the channel enters ``app`` (StasisStart)."""
        await self.request("POST", "/channels", params={
            "endpoint": endpoint, "app": app, "appArgs": app_args, "channelId": channel_id,
            "callerId": caller_id, "timeout": ring_seconds})

    async def create_bridge(self, bridge_id: str) -> None:
        await self.request("POST", "/bridges", params={"type": "mixing",
                                                        "bridgeId": bridge_id})

    async def add_to_bridge(self, bridge_id: str, channel_id: str) -> None:
        await self.request("POST", f"/bridges/{bridge_id}/addChannel",
                           params={"channel": channel_id})

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{bridge_id}")

    async def channels(self) -> list[Channel]:
        raw = await self.request("GET", "/channels")
        result = []
        for item in raw or []:
            try:
                result.append(parse_channel(item))
            except AriEventError as exc:
                log.warning("ignoring a malformed channel in GET /channels: %s", exc)
        return result

    async def subscribe_channel(self, channel_id: str) -> None:
        """Keep receiving a channel's events after it leaves the application."""
        await self.request("POST", f"/applications/{self.settings.app}/subscription",
                           params={"eventSource": f"channel:{channel_id}"})

    async def registered(self, tries: int = 5, pause: float = 0.1) -> bool:
        """Whether Asterisk has the application (``GET /applications/<app>``), asked a few
        times while it may still be registering it; an ARI that cannot be asked is taken
        at its word (the events will tell)."""
        for attempt in range(tries):
            try:
                await self.request("GET", f"/applications/{self.settings.app}")
                return True
            except AriError as exc:
                if exc.status != 404:
                    log.warning("ARI application not checked: %s", exc)
                    return True
            if attempt < tries - 1:
                await asyncio.sleep(pause)
        return False

    async def filter_events(self) -> None:
        """Ask Asterisk to send the application only :data:`WANTED_EVENTS`. Without the
        filter (an Asterisk that refuses it) every event still arrives and is ignored."""
        try:
            await self.request("PUT", f"/applications/{self.settings.app}/eventFilter",
                               json={"allowed": [{"type": kind} for kind in WANTED_EVENTS]})
        except AriError as exc:
            log.warning("ARI event filter not set (every event is sent): %s", exc)

    # events -------------------------------------------------------------------------------
    def events_url(self) -> str:
        parts = urlsplit(self.settings.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ari/events",
                           f"app={self.settings.app}&subscribeAll=false", ""))

    async def events(self) -> AsyncGenerator[Event | Connected]:
        """Events for the application, forever; reconnects with backoff when dropped."""
        token = base64.b64encode(":".join(self._auth).encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
        reconnects = -1
        backoff = 0.5
        while True:
            try:
                async for ws in connect(self.events_url(), additional_headers=headers,
                                        open_timeout=5, ping_interval=10, ping_timeout=10,
                                        max_size=1 << 20):
                    if not await self.registered():
                        # The websocket is open but the application is not Asterisk's
                        # (the last connection's teardown can unregister the name as this
                        # one registers it): calls would find no application. Again.
                        log.warning("ARI events: Asterisk has not registered the "
                                    "application on this connection; reconnecting in %.1f s",
                                    backoff)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, self.settings.reconnect_max_seconds)
                        continue
                    reconnects += 1
                    backoff = 0.5
                    log.info("ARI events connected", extra={"reconnects": reconnects})
                    self.events_up.set()
                    try:
                        await self.filter_events()
                        yield Connected(reconnects)
                        async for frame in ws:
                            try:
                                yield parse_event(frame)
                            except AriEventError as exc:
                                log.warning("ignoring a malformed ARI event: %s", exc)
                    except ConnectionClosed:
                        log.warning("ARI events websocket closed; reconnecting")
                        continue
                    finally:
                        self.events_up.clear()
            except (InvalidStatus, InvalidHandshake, OSError, TimeoutError) as exc:
                # connect() gives up on errors it considers fatal (e.g. 401): wait, try again.
                log.error("ARI events: %s; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.reconnect_max_seconds)

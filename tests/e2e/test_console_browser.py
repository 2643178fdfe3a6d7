"""The web console in a real headless Chromium (Debian's), against the service on the test
PBX: each role logs in and sees only its pages; a callback is placed from the agent's
queue and really originated; a revocation shows its deadline; another role's page by URL
and a form without its CSRF token are refused. Screenshots go to docs/screenshots/."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from testpbx.asterisk import AGENT_PORTS, CUSTOMER_PORT
from testpbx.paths import REPO
from testpbx.sipp import Pause, Press, Sipp

pytestmark = pytest.mark.pbx

CONSOLE = "http://127.0.0.1:8080"
SHOTS = REPO / "docs" / "screenshots"
PASSWORD = "console-test-password"
USERS = {"agent1": ("agent", "agent1"), "dpo": ("dpo", None), "trainer": ("trainer", None)}
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-quic"]


@pytest.fixture(scope="module")
async def console(service_runner: Any, tmp_path_factory: pytest.TempPathFactory,
                  sipp: Sipp) -> AsyncIterator[Any]:
    """A service with its console, three users, and one missed call to return."""
    log = tmp_path_factory.mktemp("console") / "service.log"
    async with service_runner.database() as url, service_runner.run(url, log) as service:
        for name, (role, endpoint) in USERS.items():
            args = ["users", "add", name, "--role", role, "--password-stdin"]
            if endpoint:
                args += ["--agent-endpoint", endpoint]
            added = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "ivr", *args], input=PASSWORD + "\n",
                env=service.env, capture_output=True, text=True, timeout=60)
            assert added.returncode == 0, added.stderr
        missed, sales = await asyncio.gather(
            sipp.call("040404040", caller="031000990", actions=(Pause(3800), Press("1")),
                      hold_ms=4000),
            sipp.call("040404045", caller="031000991", hold_ms=5000))
        assert missed.ok and sales.ok
        await service.all_call_records()
        yield service


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path="/usr/bin/chromium",
                                           args=CHROMIUM_FLAGS)
        yield chromium
        await chromium.close()


async def logged_in(browser: Browser, user: str) -> Page:
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{CONSOLE}/login")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    return page


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize(("user", "home", "refused"), [
    ("agent1", "/agent", ["/dpo", "/trainer"]),
    ("dpo", "/dpo", ["/agent", "/trainer"]),
    ("trainer", "/trainer", ["/agent", "/dpo"]),
])
async def test_each_role_sees_only_its_pages(console: Any, browser: Browser, user: str,
                                             home: str, refused: list[str]) -> None:
    page = await logged_in(browser, user)
    assert page.url.endswith(home)
    await shot(page, f"{home.strip('/')}")
    for other in refused:
        response = await page.goto(f"{CONSOLE}{other}")
        assert response is not None and response.status == 403


async def test_wrong_password_and_no_session_are_refused(console: Any,
                                                         browser: Browser) -> None:
    page = await (await browser.new_context()).new_page()
    response = await page.goto(f"{CONSOLE}/dpo")
    assert page.url.endswith("/login")  # sent to the login page
    await page.fill("input[name=username]", "dpo")
    await page.fill("input[name=password]", "not the password")
    await page.click("button[type=submit]")
    assert await page.locator(".error").count() == 1
    await shot(page, "login")
    assert response is not None


async def test_a_form_without_its_csrf_token_is_refused(console: Any,
                                                        browser: Browser) -> None:
    page = await logged_in(browser, "agent1")
    response = await page.request.post(f"{CONSOLE}/agent/revocations",
                                       form={"caller": "031000990", "note": "x"})
    assert response.status == 403
    response = await page.request.post(f"{CONSOLE}/agent/revocations",
                                       form={"caller": "031000990", "csrf": "forged"})
    assert response.status == 403


async def test_the_dpo_adds_an_email_revocation_and_sees_its_deadline(
        console: Any, browser: Browser) -> None:
    page = await logged_in(browser, "dpo")
    await page.fill("form[action='/dpo/revocations'] input[name=caller]", "041 999 888")
    await page.fill("form[action='/dpo/revocations'] input[name=received_at]",
                    "2026-11-20T17:45")
    await page.click("form[action='/dpo/revocations'] button")
    await page.wait_for_load_state()
    flash = await page.inner_text(".flash")
    assert "deadline 2026-11-27" in flash  # Fri 20 Nov + 5 working days
    assert "2026-11-27" in await page.inner_text("table")
    await shot(page, "dpo-revocation")


async def test_the_agent_places_a_callback_from_the_queue(console: Any, browser: Browser,
                                                          sipp: Sipp) -> None:
    page = await logged_in(browser, "agent1")
    row = page.locator("tr", has_text="+38631000990")
    words = await row.inner_text()
    assert "BO posnet" in words  # Slovenian first: "WILL be recorded"
    assert "obvestilo podano ob" in words  # "notice given at HH:MM"
    async with sipp.agent(AGENT_PORTS["agent1"]), sipp.customer(CUSTOMER_PORT, hold_ms=3000):
        await row.locator("button").click()
        await page.wait_for_load_state()
        callback_id = page.url.split("placed=")[1]
        for _ in range(100):
            shown = json.loads((await console.cli("callbacks", "show", callback_id,
                                                  "--json")).stdout or "{}")
            if shown.get("status") == "done":
                break
            await asyncio.sleep(0.2)
    assert shown["status"] == "done", shown
    assert shown["attempts_made"][0]["agent"] == "agent1"
    await page.goto(f"{CONSOLE}/agent?placed={callback_id}")
    assert "customer answered" in await page.inner_text("#progress")
    await shot(page, "agent-callback-placed")


async def test_the_trainer_plays_sales_recordings_only_and_each_play_is_audited(
        console: Any, browser: Browser) -> None:
    records = {r["caller_raw"]: r for r in await console.all_call_records()}
    sales, consent = records["031000991"], records["031000990"]
    page = await logged_in(browser, "trainer")
    assert sales["file_name"] in await page.inner_text("table")
    assert consent["file_name"] not in await page.content()  # rule 7: never offered
    sales_id = await recording_id(console, sales["file_name"])
    consent_id = await recording_id(console, consent["file_name"])
    played = await page.request.get(f"{CONSOLE}/trainer/recordings/{sales_id}/audio")
    assert played.status == 200 and (await played.body())[:4] == b"RIFF"
    refused = await page.request.get(f"{CONSOLE}/trainer/recordings/{consent_id}/audio")
    assert refused.status == 404
    accesses = await audit_actions(console, "recording_accessed")
    assert [(a["subject_id"], a["details"]["purpose"]) for a in accesses] == [
        (sales_id, "training")]
    await shot(page, "trainer")


async def test_the_dpo_downloads_a_subject_export(console: Any, browser: Browser) -> None:
    page = await logged_in(browser, "dpo")
    await page.goto(f"{CONSOLE}/dpo?number=031000990")
    assert "consent" in await page.inner_text("table >> nth=-1")
    async with page.expect_download() as download_info:
        await page.click("#export")
    download = await download_info.value
    path = await download.path()
    import zipfile

    with zipfile.ZipFile(path) as archive:
        calls = json.loads(archive.read("calls.json"))
    assert {c["caller"] for c in calls} == {"+38631000990"}
    assert await audit_actions(console, "subject_exported")


async def recording_id(console: Any, file_name: str) -> str:
    rows = await console.query("SELECT id FROM recordings WHERE file_name = :f",
                               {"f": file_name})
    return str(rows[0]["id"])


async def audit_actions(console: Any, action: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await console.query(
        "SELECT subject_id, details FROM audit_log WHERE action = :a ORDER BY id",
        {"a": action})
    return rows


def test_screenshots_are_linked_from_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    assert "docs/screenshots" in readme
    assert any(Path(SHOTS).glob("*.png"))

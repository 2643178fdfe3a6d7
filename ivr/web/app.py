"""The console's FastAPI application: sessions, CSRF, roles, and the pages per audience.

Every form carries a CSRF token bound to the server-side session (the login form: to a
cookie set with the form). A page of another role is refused (403); without a session the
browser is sent to the login page.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ivr.web.auth import SessionInfo, csrf_ok
from ivr.web.console import Console

COOKIE = "ivr_session"
LOGIN_CSRF = "ivr_login_csrf"
HOME = {"agent": "/agent", "dpo": "/dpo", "trainer": "/trainer", "admin": "/dpo"}
TEMPLATES = Path(__file__).with_name("templates")


class LoginRequired(Exception):
    pass


def templates() -> Jinja2Templates:
    return Jinja2Templates(directory=str(TEMPLATES))


def create_app(console: Console) -> FastAPI:
    from ivr.web import monitoring, pages_agent, pages_dpo, pages_trainer

    app = FastAPI(title="ivr console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = console

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.get("/")
    async def home(me: Annotated[SessionInfo, Depends(session)]) -> Response:
        return RedirectResponse(HOME[me.role], status_code=303)

    @app.get("/login")
    async def login_form(request: Request) -> Response:
        token = secrets.token_urlsafe(24)
        response: Response = console.render(request, "login.html", None, csrf=token)
        response.set_cookie(LOGIN_CSRF, token, httponly=True, samesite="strict",
                            secure=console.settings.web.secure_cookies)
        return response

    @app.post("/login")
    async def login(request: Request, username: Annotated[str, Form(max_length=64)],
                    password: Annotated[str, Form(max_length=256)],
                    csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
        expected = request.cookies.get(LOGIN_CSRF, "")
        if not expected or not secrets.compare_digest(expected, csrf):
            raise HTTPException(403, "CSRF token missing or wrong")
        user = await console.users.authenticate(username, password)
        if user is None:
            token = secrets.token_urlsafe(24)
            response = console.render(request, "login.html", None, csrf=token,
                                      error=_t(request)["login_failed"])
            response.status_code = 401
            response.set_cookie(LOGIN_CSRF, token, httponly=True, samesite="strict",
                                secure=console.settings.web.secure_cookies)
            return response
        token, _ = await console.sessions.create(user, console.settings.web.session_hours)
        response = RedirectResponse(HOME[user.role], status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                            secure=console.settings.web.secure_cookies)
        response.delete_cookie(LOGIN_CSRF)
        return response

    @app.post("/logout")
    async def logout(request: Request, me: Annotated[SessionInfo, Depends(session)],
                     csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
        check_csrf(me, csrf)
        await console.sessions.delete(request.cookies.get(COOKIE, ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    app.include_router(pages_agent.router)
    app.include_router(pages_dpo.router)
    app.include_router(pages_trainer.router)
    app.include_router(monitoring.router)
    return app


def _t(request: Request) -> dict[str, str]:
    from ivr.web.i18n import texts

    return texts(request.query_params.get("lang", "sl"))


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


async def session(request: Request) -> SessionInfo:
    token = request.cookies.get(COOKIE)
    if not token:
        raise LoginRequired
    info = await console_of(request).sessions.get(token)
    if info is None:
        raise LoginRequired
    return info


def role(*roles: str) -> Any:
    """A dependency: the session, if its role may see this page (admin sees all)."""

    async def check(me: Annotated[SessionInfo, Depends(session)]) -> SessionInfo:
        if me.role != "admin" and me.role not in roles:
            raise HTTPException(403, "this page is not for your role")
        return me

    return Depends(check)


def check_csrf(me: SessionInfo, submitted: str | None) -> None:
    if not csrf_ok(me, submitted):
        raise HTTPException(403, "CSRF token missing or wrong")

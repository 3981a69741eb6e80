"""The console's web application: operator login, the pages, and the redrive action.

Page handlers are plain functions, so FastAPI runs them in its thread pool: Kafka and registry reads
block a thread of the console, never its event loop, and nothing here is on the message path. Every
page but the login needs the session cookie; POSTs also need the session's CSRF token and an Origin
that is this console.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from urllib.parse import parse_qs, quote, urlencode

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.console import auth, overview, pages, records, registry
from beacon.console import conversations as conv
from beacon.console.html import error_box, page
from beacon.console.throughput import Sampler, chart_svg
from beacon.errors import BeaconError
from beacon.ops import deadletters

log = logging.getLogger("beacon.console")

#: What the pages may load: their own script, inline styles, nothing from elsewhere.
CSP = ("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

#: Refreshes the chart every few seconds (the only script of the console).
SCRIPT = """
(function () {
  var box = document.getElementById('chart');
  if (!box) return;
  setInterval(function () {
    fetch(box.dataset.refresh, {credentials: 'same-origin'})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (svg) { if (svg) box.innerHTML = svg; })
      .catch(function () {});
  }, 5000);
})();
"""


class LoginRequired(Exception):
    """Raised by the session check; answered with a redirect to the login form."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def operator_session(request: Request) -> str:
    """The session id of the request's valid login cookie; else LoginRequired (a redirect to the form)."""
    sid = auth.session_id(request.app.state.token, request.cookies.get(auth.COOKIE))
    if sid is None:
        target = request.url.path if request.method == "GET" else "/"
        raise LoginRequired(target if target.startswith("/") and not target.startswith("//") else "/")
    return sid


Session = Annotated[str, Depends(operator_session)]


def create_app(settings: Settings, token: str) -> FastAPI:
    """The console for ``settings``' stack, accepting operators who know ``token``."""
    sampler = Sampler(settings)
    codecs: list[MessageCodec] = []

    def codec() -> MessageCodec:
        if not codecs:
            codecs.append(MessageCodec(settings))
        return codecs[0]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sampler.start()
        yield
        sampler.stop()

    app = FastAPI(title="Beacon console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.token = token

    @app.middleware("http")
    async def headers(request: Request, call_next: object) -> Response:
        response: Response = await call_next(request)  # type: ignore[operator]
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(LoginRequired)
    async def to_login(_request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?{urlencode({'next': exc.next_path})}", status_code=303)

    def html(title: str, body: str, active: str = "", status: int = 200, logged_in: bool = True) -> HTMLResponse:
        return HTMLResponse(page(title, body, active=active, logged_in=logged_in), status_code=status)

    # --- login -------------------------------------------------------------------------------

    def logged_in_response(next_path: str) -> Response:
        target = next_path if next_path.startswith("/") and not next_path.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(auth.COOKIE, auth.new_session(token), max_age=auth.SESSION_SECONDS, httponly=True,
                            samesite="strict", path="/")
        return response

    @app.get("/login")
    def login_form(next: str = "/", token_param: Annotated[str | None, Query(alias="token")] = None) -> Response:
        if token_param is not None:
            if auth.token_matches(token_param, token):
                return logged_in_response(next)
            return html("Log in", pages.login("wrong token", next), status=401, logged_in=False)
        return html("Log in", pages.login(None, next), logged_in=False)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        given = form.get("token", [""])[0]
        next_path = form.get("next", ["/"])[0]
        if not auth.same_origin(request.headers.get("origin"), request.headers.get("host")):
            return html("Log in", pages.login("refused: the form was not sent from this console", next_path),
                        status=403, logged_in=False)
        if not given or not auth.token_matches(given, token):
            log.warning("console: refused a login from %s (wrong token)", request.client.host if request.client
                        else "?")
            return html("Log in", pages.login("wrong token", next_path), status=401, logged_in=False)
        return logged_in_response(next_path)

    @app.post("/logout")
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth.COOKIE, path="/")
        return response

    @app.get("/healthz")
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/console.js")
    def script() -> Response:
        return Response(SCRIPT, media_type="text/javascript")

    # --- pages -------------------------------------------------------------------------------

    def chart() -> str:
        return chart_svg(sampler.rates(), settings.console.chart_minutes)

    @app.get("/", response_class=HTMLResponse)
    def overview_page(_sid: Session) -> HTMLResponse:
        checks, from_card = overview.health(settings)
        lag_rows, lag_problems = overview.lag(settings)
        try:
            waiting: int | None = overview.dead_letters_waiting(settings)
        except BeaconError:
            waiting = None
        body = pages.overview(checks, from_card, chart(), sampler.problem, lag_rows, lag_problems, waiting,
                              settings.topics.dlq)
        return HTMLResponse(page("Overview", body, active="/", script_src="/console.js"))

    @app.get("/overview/chart")
    def overview_chart(_sid: Session) -> Response:
        return Response(chart(), media_type="image/svg+xml")

    @app.get("/conversations", response_class=HTMLResponse)
    def conversations_page(_sid: Session, q: str = "") -> HTMLResponse:
        users, problem = None, None
        if q.strip():
            try:
                users = conv.find_users(settings, q.strip())
            except BeaconError as exc:
                problem = str(exc)
        return html("Conversations", pages.conversations_search(q, users, problem), "/conversations")

    @app.post("/conversations/handoff", response_class=HTMLResponse)
    async def handoff(request: Request, sid: Session) -> Response:
        form = await checked_form(request, sid)
        if form is None:
            return refused()
        user_key, operator = form.get("user_key", [""])[0], form.get("operator", ["operator"])[0].strip()
        action = form.get("action", [""])[0]
        try:
            if action == "take":
                await run_in_threadpool(conv.take_over, settings, user_key, operator or "operator",
                                        form.get("reason", [""])[0].strip())
            else:
                await run_in_threadpool(conv.hand_back, settings, user_key, operator or "operator")
        except BeaconError as exc:
            return html("Conversation", error_box(str(exc)), "/conversations", status=502)
        log.info("console: operator %r %s conversation %s", operator,
                 "took over" if action == "take" else "handed back", user_key)
        return RedirectResponse(f"/conversations/{quote(user_key, safe='')}", status_code=303)

    @app.post("/conversations/send", response_class=HTMLResponse)
    async def operator_send(request: Request, sid: Session) -> Response:
        form = await checked_form(request, sid)
        if form is None:
            return refused()
        user_key, text = form.get("user_key", [""])[0], form.get("text", [""])[0].strip()
        try:
            user = await run_in_threadpool(conv.get_user, settings, user_key)
            if user is None:
                raise conv.ApiRefusedError(f"no user with key {user_key!r}")
            if text:
                await run_in_threadpool(conv.send_text, settings, user, text)
        except BeaconError as exc:
            return html("Conversation", error_box(str(exc)), "/conversations", status=502)
        return RedirectResponse(f"/conversations/{quote(user_key, safe='')}", status_code=303)

    async def checked_form(request: Request, sid: str) -> dict[str, list[str]] | None:
        """The posted form when it came from this console's page (origin and CSRF token), else None."""
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        if not auth.same_origin(request.headers.get("origin"), request.headers.get("host")) or not \
                auth.token_matches(form.get("csrf", [""])[0], auth.csrf_token(token, sid)):
            return None
        return form

    def refused() -> HTMLResponse:
        return html("Conversation", error_box("refused: the form was not sent from this console's page"),
                    "/conversations", status=403)

    @app.get("/conversations/{user_key:path}", response_class=HTMLResponse)
    def conversation_page(user_key: str, sid: Session) -> HTMLResponse:
        try:
            control = pages.handoff_box(user_key, conv.get_user(settings, user_key), auth.csrf_token(token, sid))
            body = pages.timeline(user_key, conv.timeline(settings, user_key), control)
        except BeaconError as exc:
            body = error_box(str(exc))
        return html("Conversation", body, "/conversations")

    topic_names = {"in": settings.topics.inbound, "out": settings.topics.outbound, "dlq": settings.topics.dlq}

    @app.get("/topics", response_class=HTMLResponse)
    def topics_page(_sid: Session, topic: str = "in", partition: str = "", offset: str = "",
                    key: str = "") -> HTMLResponse:
        name = topic_names.get(topic, settings.topics.inbound)
        code = topic if topic in topic_names else "in"
        part = int(partition) if partition.strip().isdigit() else None
        off = int(offset) if offset.strip().isdigit() else None
        try:
            wins, found = records.browse(settings, codec(), name, part, off, key.strip() or None)
            try:
                versions = registry.versions_by_id(registry.subjects(settings))
            except BeaconError:
                versions = {}
            body = pages.topics([(c, n) for c, n in topic_names.items()], code, wins, found, part, off,
                                key.strip() or None, versions)
        except BeaconError as exc:
            body = error_box(str(exc))
        return html("Topics", body, "/topics")

    @app.get("/deadletters", response_class=HTMLResponse)
    def dead_letters_page(sid: Session) -> HTMLResponse:
        try:
            letters = list(deadletters.iter_dead_letters(settings))[-records.MAX_RECORDS:]
            body = pages.dead_letters([(d, deadletters.decode(settings, d)) for d in reversed(letters)],
                                      auth.csrf_token(token, sid))
        except BeaconError as exc:
            body = error_box(str(exc))
        return html("Dead letters", body, "/deadletters")

    @app.post("/deadletters/redrive", response_class=HTMLResponse)
    async def redrive(request: Request, sid: Session) -> HTMLResponse:
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        csrf = auth.csrf_token(token, sid)
        if not auth.same_origin(request.headers.get("origin"), request.headers.get("host")) or not \
                auth.token_matches(form.get("csrf", [""])[0], csrf):
            return html("Dead letters", error_box("refused: the form was not sent from this console's page"),
                        "/deadletters", status=403)
        try:
            refs = [deadletters.parse_ref(r) for r in form.get("ref", [])]
        except BeaconError as exc:
            return html("Dead letters", error_box(str(exc)), "/deadletters", status=400)
        if not refs:
            return html("Dead letters", error_box("select at least one dead letter to redrive")
                        + '<p><a href="/deadletters">Back</a></p>', "/deadletters", status=400)
        return await _redrive(refs, form.get("confirm", [""])[0] == "yes", csrf)

    async def _redrive(refs: list[tuple[int, int]], confirmed: bool, csrf: str) -> HTMLResponse:
        letters = await run_in_threadpool(lambda: list(deadletters.iter_dead_letters(settings, only=refs)))
        if not confirmed:
            return html("Redrive dead letters", pages.confirm_redrive(letters, csrf), "/deadletters")
        sent, problems = await run_in_threadpool(deadletters.redrive, settings, letters)
        log.info("console: an operator redrove %d of %d dead letter(s) (%s)%s", sent, len(letters),
                 ", ".join(d.ref for d in letters), f"; problems: {'; '.join(problems)}" if problems else "")
        return html("Redrive dead letters", pages.redrive_result(sent, problems), "/deadletters")

    @app.get("/schemas", response_class=HTMLResponse)
    def schemas_page(_sid: Session) -> HTMLResponse:
        try:
            body = pages.schemas(registry.subjects(settings))
        except BeaconError as exc:
            body = error_box(str(exc))
        return html("Schemas", body, "/schemas")

    return app

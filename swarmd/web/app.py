"""The dashboard's ASGI app (starlette): pages, JSON, event streams and actions, all behind a session.

Routes: `GET /login?t=TOKEN` (spend a magic link), `GET /` (the page), `GET /static/{name}`, `GET /api/state`
(board, registry, questions), `GET /events` (the feed, server-sent, resuming from `Last-Event-ID` or
`?since=SEQ`), `GET /panes/{worker}/events` (a worker's pane as text, sent again whenever its log grows),
`POST /api/actions/{name}` (steer, reply, kill, retry, pause, resume; JSON body, `X-CSRF-Token` header).
Every route but `/login` answers 401 without a session; every POST answers 403 without its CSRF token.
"""

import asyncio
import html
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from protocol.errors import ProtocolError
from protocol.names import validate_agent_name
from swarmd.errors import SwarmError, WorkerEnded
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.operate import Operator
from swarmd.watch import watch_file
from swarmd.web import views
from swarmd.web.actions import act
from swarmd.web.auth import COOKIE, CSRF_HEADER, SESSION_TTL, Auth, Session
from swarmd.web.hub import CLOSE, FeedHub, sse
from swarmd.workers.spawner import Spawner

BACKLOG_PAGE = 1000  # events read from the file at a time when a stream catches up
PANE_MIN_GAP = 0.25  # seconds between two captures of one pane while it prints without pause
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                                 b"img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
]
NO_SESSION = "no session: open the link that `swarm web --link` prints"


class RequireSession:
    """ASGI middleware: no route but /login without a live session cookie (401), no POST without the
    session's CSRF token (403); the session is put in `scope["state"]["session"]`. Adds the security headers
    (a strict Content-Security-Policy: no inline script can run) to every answer."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app, self.auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        if scope["path"] != "/login":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            session = await run_in_threadpool(self.auth.session, _cookie(headers.get("cookie", "")))
            if session is None:
                await PlainTextResponse(NO_SESSION, 401)(scope, receive, send)
                return
            if scope["method"] not in ("GET", "HEAD") and not session.csrf_ok(headers.get(CSRF_HEADER)):
                await PlainTextResponse("missing or wrong CSRF token: act from the page", 403)(scope, receive, send)
                return
            scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, send)


def _with_headers(send: Send) -> Send:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
        await send(message)
    return wrapped


def _cookie(header: str) -> str | None:
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(header)
    except Exception:  # noqa: BLE001 - a malformed cookie header is no session
        return None
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel else None


class Dashboard:
    """The routes' handlers over one home: one shared `Operator` that only reads (one call at a time) for the
    panels, a new `Operator` acting as the session's person for each action, and one `FeedHub` for streams."""

    def __init__(self, home: SwarmHome) -> None:
        self.home = home
        self.auth = Auth(home)
        self.reader = Operator(home)
        self.read_lock = asyncio.Lock()
        self.hub = FeedHub(Ledger(home, durable=self.reader.config.durable))
        self.pane_died = Spawner(home, self.reader.config, self.reader.tmux).pane_died_file

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.hub.start()
        try:
            yield
        finally:
            self.hub.stop()

    async def login(self, request: Request) -> Response:
        redeemed = await run_in_threadpool(self.auth.redeem, request.query_params.get("t", ""))
        if redeemed is None:
            return PlainTextResponse("this link was used already or has expired: run `swarm web --link` for a "
                                     "new one", 401)
        session_id, _ = redeemed
        # A page of our own moves on to "/", so the browser sends the SameSite=Strict cookie (a redirect from
        # a link clicked elsewhere would count as cross-site and arrive without it).
        page = HTMLResponse(_page("login.html", {}))
        page.set_cookie(COOKIE, session_id, max_age=int(SESSION_TTL), httponly=True, samesite="strict", path="/")
        return page

    async def index(self, request: Request) -> Response:
        session: Session = request.state.session
        return HTMLResponse(_page("index.html", {"csrf": session.csrf, "actor": session.actor,
                                                 "home": str(self.home.root)}))

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found", 404)
        return Response(_resource(name), media_type=STATIC[name])

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(self.reader, *args)` on a worker thread, one at a time (the reader's ledger caches are shared)."""
        async with self.read_lock:
            return await run_in_threadpool(fn, self.reader, *args)

    async def state(self, request: Request) -> Response:
        return JSONResponse(await self._read(views.state))

    async def action(self, request: Request) -> Response:
        session: Session = request.state.session
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be a JSON object"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, 400)
        try:
            operator = await run_in_threadpool(Operator, self.home, session.actor)
            result = await run_in_threadpool(act, operator, request.path_params["name"], body)
        except (SwarmError, ProtocolError) as exc:
            return JSONResponse({"error": str(exc)}, 409 if isinstance(exc, WorkerEnded) else 400)
        return JSONResponse(result)

    async def events(self, request: Request) -> Response:
        since = _since(request, self.hub.last_seq)
        if since is None:
            return PlainTextResponse("Last-Event-ID and `since` must be a ledger seq (a whole number)", 400)
        return StreamingResponse(self._feed(since), media_type="text/event-stream")

    async def _feed(self, since: int) -> AsyncIterator[bytes]:
        subscriber = self.hub.subscribe()  # before the catch-up read: nothing falls between the two
        try:
            yield b"retry: 1000\n\n"
            sent = since
            while batch := await run_in_threadpool(self.hub.ledger.events, since_seq=sent, limit=BACKLOG_PAGE):
                yield b"".join(sse(e) for e in batch)
                sent = batch[-1].seq
            while True:
                items = [await subscriber.queue.get()]
                while not subscriber.queue.empty():  # a burst goes out in one write
                    items.append(subscriber.queue.get_nowait())
                fresh = b"".join(data for seq, data in items if data != CLOSE and (seq == 0 or seq > sent))
                sent = max(sent, *(seq for seq, _ in items))
                if fresh:
                    yield fresh
                if any(data == CLOSE for _, data in items):
                    return
        finally:
            self.hub.unsubscribe(subscriber)

    async def pane_events(self, request: Request) -> Response:
        try:
            worker = validate_agent_name(request.path_params["worker"])
        except ProtocolError as exc:
            return PlainTextResponse(str(exc), 400)
        if worker not in await self._read(lambda reader: reader.ledger.registry()):
            return PlainTextResponse(f"no worker named {worker!r}", 404)
        return StreamingResponse(self._pane(worker), media_type="text/event-stream")

    async def _pane(self, worker: str) -> AsyncIterator[bytes]:
        """The pane's text now, then again each time its log or a pane's death says it may have changed."""
        loop, wake = asyncio.get_running_loop(), asyncio.Event()
        poke = lambda: loop.call_soon_threadsafe(wake.set)  # noqa: E731 - a watch thread's callback
        watches = [watch_file(self.home.logs_dir / f"{worker}.log", poke), watch_file(self.pane_died, poke)]
        try:
            last: str | None = ""
            while True:
                captured = time.monotonic()
                text = await self._capture(worker)
                if text != last:
                    yield f"data: {json.dumps({'text': text})}\n\n".encode()
                    last = text
                if text is None:
                    return
                await wake.wait()
                wake.clear()
                await asyncio.sleep(max(0.0, PANE_MIN_GAP - (time.monotonic() - captured)))
        finally:
            for watch in watches:
                watch.stop()

    async def _capture(self, worker: str) -> str | None:
        try:
            return await self._read(views.pane_text, worker)
        except SwarmError:
            return None


def _since(request: Request, default: int) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("since")
    if raw is None:
        return default
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def _resource(name: str) -> bytes:
    return resources.files("swarmd.web").joinpath("static", name).read_bytes()


def _page(name: str, values: dict[str, str]) -> str:
    """A page from static/, its `{{key}}` placeholders filled with HTML-escaped values."""
    text = _resource(name).decode()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value))
    return text


def create_app(home: SwarmHome) -> Starlette:
    """The dashboard of `home` as an ASGI app (serve it with uvicorn)."""
    web = Dashboard(home)
    routes = [
        Route("/login", web.login), Route("/", web.index), Route("/static/{name}", web.static),
        Route("/api/state", web.state), Route("/events", web.events),
        Route("/panes/{worker}/events", web.pane_events),
        Route("/api/actions/{name}", web.action, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=web.lifespan)
    app.add_middleware(RequireSession, auth=web.auth)
    return app


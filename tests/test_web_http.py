"""The dashboard over plain HTTP: nothing without a session, no action without its CSRF token, one-time links,
text from the swarm sent as data (never as markup), and the feed stream resuming from Last-Event-ID."""

import json
import stat
from pathlib import Path

import httpx
from conftest import run_cli
from webkit import dashboard

from protocol.event import EventType
from protocol.task import Task
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.web.auth import LINK_TTL, SESSION_TTL, Auth

HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
PAGES = [("GET", "/"), ("GET", "/static/app.js"), ("GET", "/api/state"), ("GET", "/events"),
         ("GET", "/events?since=0"), ("GET", "/panes/w1/events"), ("GET", "/nowhere"),
         *[("POST", f"/api/actions/{a}") for a in ("steer", "reply", "kill", "retry", "pause", "resume")]]


def new_home(swarm_home: SwarmHome) -> Ledger:
    assert run_cli("swarm", "init", "--home", str(swarm_home.root)).returncode == 0
    return Ledger(swarm_home)


def test_nothing_without_a_session_no_action_without_csrf_and_titles_stay_text(swarm_home: SwarmHome) -> None:
    ledger = new_home(swarm_home)
    ledger.add_task(Task(id="evil", title=HOSTILE), "operator")
    with dashboard(swarm_home, "--as", "alice") as web, httpx.Client(base_url=web.url, timeout=30) as anon:
        for method, path in PAGES:
            for cookies in ({}, {"swarm_session": "x" * 43}):
                anon.cookies.clear()
                anon.cookies.update(cookies)
                answer = anon.request(method, path, json={}, headers={"X-CSRF-Token": "x"})
                assert answer.status_code == 401, (method, path, cookies, answer.status_code)

        browser = httpx.Client(base_url=web.url, timeout=30)
        signed_in = browser.get(web.link)
        assert signed_in.status_code == 200
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert httpx.get(web.link).status_code == 401, "a link signs in once"

        page = browser.get("/")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert "pwned" not in page.text, "the page is the same for every swarm: its data comes as JSON"
        state = browser.get("/api/state")
        assert state.headers["content-type"] == "application/json"
        assert [t["title"] for t in state.json()["tasks"]] == [HOSTILE]
        csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]

        for headers in ({}, {"X-CSRF-Token": "not-the-token"}, {"X-CSRF-Token": ""}):
            stolen = browser.post("/api/actions/pause", json={}, headers=headers)
            assert stolen.status_code == 403, headers
        assert not (swarm_home.run_dir / "dispatch-paused").exists()
        assert not [e for e in ledger.events() if "paused" in e.summary]

        paused = browser.post("/api/actions/pause", json={}, headers={"X-CSRF-Token": csrf})
        assert paused.status_code == 200 and paused.json() == {"changed": True}
        [event] = [e for e in ledger.events() if e.detail.get("dispatch") == "paused"]
        assert event.agent == "alice" and event.summary == "dispatch paused by alice"
        assert json.loads(run_cli("swarm", "status", "--home", str(swarm_home.root), "--json").stdout)[
            "dispatch"] == {"paused": True}
        refused = browser.post("/api/actions/steer", json={"worker": "nobody", "text": "hi"},
                               headers={"X-CSRF-Token": csrf})
        assert refused.status_code == 400 and "no worker named 'nobody'" in refused.json()["error"]
        assert browser.post("/api/actions/resume", json={}, headers={"X-CSRF-Token": csrf}).json() == {"changed": True}

        again = run_cli("swarm", "web", "--home", str(swarm_home.root), "--link", "--json")
        said = json.loads(again.stdout)
        assert said["running"] and said["url"] == web.url, "a second --link names the running dashboard"
        assert httpx.get(said["link"]).status_code == 200
        browser.close()

    web_dir = swarm_home.run_dir / "web"
    for path in [web_dir, *web_dir.rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path


def test_the_feed_stream_resumes_after_last_event_id_in_order(swarm_home: SwarmHome) -> None:
    ledger = new_home(swarm_home)
    for i in range(5):
        ledger.append(EventType.PROGRESS, "w1", summary=f"step {i}")
    with dashboard(swarm_home) as web, httpx.Client(base_url=web.url, timeout=30) as browser:
        assert browser.get(web.link).status_code == 200
        seen: list[int] = []
        with browser.stream("GET", "/events", headers={"Last-Event-ID": "2"}) as stream:
            for line in stream.iter_lines():
                if line.startswith("id: "):
                    seen.append(int(line[4:]))
                    if seen[-1] == 5:  # caught up from the file: what comes now is live
                        for i in range(5, 8):
                            ledger.append(EventType.PROGRESS, "w1", summary=f"step {i}")
                    if seen[-1] == 8:
                        break
        assert seen == [3, 4, 5, 6, 7, 8]
        assert browser.get("/events", headers={"Last-Event-ID": "x1"}).status_code == 400
        assert browser.get("/panes/..%2f..%2fetc/events").status_code in (400, 404)


def test_serving_beyond_loopback_needs_allow_remote(swarm_home: SwarmHome, tmp_path: Path) -> None:
    new_home(swarm_home)
    refused = run_cli("swarm", "web", "--home", str(swarm_home.root), "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert "0.0.0.0 is not a loopback address" in refused.stderr and "--allow-remote" in refused.stderr


def test_links_and_sessions_expire_by_the_clock(swarm_home: SwarmHome) -> None:
    now = [1_000_000.0]
    auth = Auth(swarm_home, clock=lambda: now[0])
    late = auth.mint_link("alice")
    now[0] += LINK_TTL + 1
    assert auth.redeem(late) is None, "a link not used in time is refused"
    session_id, session = auth.redeem(auth.mint_link("alice")) or ("", None)
    assert session is not None and auth.session(session_id) == session and session.actor == "alice"
    now[0] += SESSION_TTL + 1
    assert auth.session(session_id) is None, "and a session ends"
    auth.mint_link("bob")  # making a link clears what has expired
    assert [p.parent.name for p in (swarm_home.run_dir / "web").rglob("*.json")] == ["links"]

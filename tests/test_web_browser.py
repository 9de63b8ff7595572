"""The dashboard in a real headless Chromium (the system's, driven by playwright): sign in with a magic link,
watch the board and the feed change as a plan runs, read a worker's pane and steer it, answer its question
from the page.
A screenshot of each panel is kept in test-artifacts/web/."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_cli
from swarmkit import events, init_home, wait_until, write_plan
from webkit import dashboard

from agentmail import PostOffice
from protocol.messages import MessageType
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "test-artifacts" / "web"
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
# Escapes (a title, colours) around the text the pane shows; then a question, and a wait for its answer.
ASKS = (r"printf '\033]0;a title\007\033[31mwaiting\033[0m for an answer\n'; "
        'agentmail send --from "$SWARM_AGENT" --to supervisor --type HELP_REQUEST '
        '--task asks --field question="which port?" >/dev/null && '
        'agentmail wait "$SWARM_AGENT" --type HELP_RESPONSE --timeout 120 --json > {out}')
WAIT = 60_000  # ms: a deadline for what the page shows, far above how long it takes


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    if CHROMIUM is None:
        pytest.skip("no Chromium here: install Debian's `chromium` package (.ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def shoot(page: Any, panel: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{panel}.png"
    page.locator(f"#{panel}").screenshot(path=str(path))
    return path


def test_an_operator_watches_a_plan_and_answers_a_question_from_the_page(swarm_home: SwarmHome, tmp_path: Path,
                                                                          browser: Any) -> None:
    init_home(swarm_home, max_workers=3)
    gate, answer = tmp_path / "gate", tmp_path / "answer.json"
    home = ["--home", str(swarm_home.root)]
    with dashboard(swarm_home, "--as", "alice") as web:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(web.link)
        page.locator("#connection", has_text="live").wait_for(timeout=WAIT)
        assert page.url == f"{web.url}/", "the link leads on to the dashboard"

        # The plan starts after the page has loaded: everything below reaches the page live.
        plan = write_plan(tmp_path / "plan.json", [
            {"id": "gated", "title": "waits for the gate",
             "description": f"echo waiting for the gate; while [ ! -e {gate} ]; do sleep 0.05; done"},
            {"id": "asks", "title": "asks a question", "description": ASKS.format(out=answer)},
            {"id": "evil", "title": HOSTILE, "description": "true", "blocked_by": ["gated"]},
        ])
        assert run_cli("swarm", "run", str(plan), *home).returncode == 0
        page.locator('.column[data-status="in_progress"] [data-task="gated"]').wait_for(timeout=WAIT)
        page.locator('.column[data-status="open"] [data-task="evil"]').wait_for(timeout=WAIT)

        worker = wait_until(lambda: Ledger(swarm_home).task("asks").assignee, 30, "asks to be assigned")
        page.locator(f'#registry tr[data-agent="{worker}"] button.view').click()
        page.locator("#pane pre", has_text="waiting for an answer").wait_for(timeout=WAIT)
        assert "\x1b" not in page.locator("#pane pre").text_content(), "terminal escapes never reach the page"
        shoot(page, "pane")
        page.locator("#steer input").fill("use the staging port")
        page.locator("#steer button").click()
        page.locator("#feed li", has_text=f"alice custom asks: steered {worker}: use the staging port").wait_for(
            timeout=WAIT)
        [steer] = [d.message for d in PostOffice(swarm_home.root).mailbox(worker).list()
                   if d.message.type == MessageType.STEER]
        assert steer.body.text == "use the staging port" and steer.sender == "alice"

        form = page.locator(f'#waiting form[data-worker="{worker}"]')
        form.locator(".question", has_text="which port?").wait_for(timeout=WAIT)
        shoot(page, "waiting")
        form.locator("input").fill("use port 8080")
        form.locator("button").click()
        wait_until(lambda: answer.exists() and answer.read_text().strip(), 60, "the worker to receive the answer")
        assert json.loads(answer.read_text())["body"]["answer"] == "use port 8080"
        # The mail goes before its feed line (operate.reply): the worker may read it before the line is written.
        [answered] = wait_until(lambda: [e for e in events(swarm_home) if e.detail.get("answered") == worker], 30,
                                "the answer in the feed")
        assert answered.agent == "alice", "the feed says who answered"
        page.locator("#feed li", has_text=f"alice answered {worker}: use port 8080").wait_for(timeout=WAIT)

        before = page.locator("#feed li").count()
        gate.touch()
        page.locator("#feed li", has_text="task_completed gated").wait_for(timeout=WAIT)
        assert page.locator("#feed li").count() > before, "the feed appended live"
        for task in ("gated", "asks", "evil"):
            page.locator(f'.column[data-status="done"] [data-task="{task}"]').wait_for(timeout=WAIT)
        assert page.locator('[data-task="evil"] .title').text_content() == HOSTILE, "a title is shown as text"
        assert page.evaluate("window.pwned") is None, "and never run"
        for panel in ("board", "feed", "registry"):
            assert shoot(page, panel).stat().st_size > 0
        page.close()
    assert run_cli("swarm", "down", *home).returncode == 0

"""Watching a mailbox: mail from before and after the watch starts, polling, waits, and timeouts."""

import queue
import threading
import time
from pathlib import Path

import pytest

from agentmail import PostOffice
from agentmail.watch import ArrivalWatch
from protocol import MessageType, make_message


def steer(to: str, text: str = "x"):  # type: ignore[no-untyped-def]
    return make_message(MessageType.STEER, "sup", to, {"text": text})


@pytest.fixture
def po(home_dir: Path) -> PostOffice:
    office = PostOffice(home_dir, durable=False)
    office.register("w1")
    return office


@pytest.mark.parametrize("polling", [False, True])
def test_watch_yields_waiting_then_new_mail_in_order_once(po: PostOffice, polling: bool) -> None:
    before = [po.send(steer("w1", str(i))).id for i in range(3)]
    stream = po.mailbox("w1").watch(polling=polling, timeout=10)
    assert [next(stream).message.id for _ in before] == before
    after = [po.send(steer("w1", f"late {i}")).id for i in range(3)]
    assert [next(stream).message.id for _ in after] == after
    stream.close()
    assert [d.message.id for d in po.mailbox("w1").list()] == before + after, "watch without claim keeps mail unread"


def test_polling_is_used_when_asked(po: PostOffice) -> None:
    arrivals: queue.Queue[None] = queue.Queue()
    with ArrivalWatch(po.mailbox("w1").path / "new", lambda: arrivals.put(None), polling=True) as watch:
        assert watch.polling
        po.send(steer("w1"))
        arrivals.get(timeout=30)
    with ArrivalWatch(po.mailbox("w1").path / "new", lambda: None) as watch:
        assert not watch.polling


def test_on_arrival_only_signals_and_stops(po: PostOffice) -> None:
    box = po.mailbox("w1")
    arrived = threading.Event()
    watch = box.on_arrival(arrived.set)
    po.send(steer("w1"))
    assert arrived.wait(5)
    assert len(box.list()) == 1  # the owner reads on its own thread
    watch.stop()
    arrived.clear()
    po.send(steer("w1"))
    assert not arrived.wait(0.3), "a stopped watch must not call back"


def test_claiming_watch_is_not_slowed_by_its_own_claims(po: PostOffice) -> None:
    """watchdog delays events queued behind a move out of the directory by 0.5 s; we must not."""
    stream = po.mailbox("w1").watch(claim=True, timeout=10)
    po.send(steer("w1", "first"))
    assert next(stream).path.parent.name == "cur"
    gaps = []
    for i in range(5):
        started = time.monotonic()
        po.send(steer("w1", str(i)))
        assert next(stream).message.body.text == str(i)
        gaps.append(time.monotonic() - started)
    stream.close()
    assert sorted(gaps)[2] < 0.25, f"arrivals after a claim were delayed: {gaps}"


def test_watch_ends_on_stop_event(po: PostOffice) -> None:
    stop = threading.Event()
    stream = po.mailbox("w1").watch(stop=stop)
    po.send(steer("w1"))
    next(stream)
    stop.set()
    assert list(stream) == []


def test_wait_filters_claims_and_times_out(po: PostOffice) -> None:
    box = po.mailbox("w1")
    started = time.monotonic()
    assert box.wait(timeout=0.3) is None
    assert 0.3 <= time.monotonic() - started < 3
    po.send(steer("w1", "not this"))
    progress = po.send(make_message(MessageType.PROGRESS, "sup", "w1", {"task": "t-2"}))
    result: queue.Queue[object] = queue.Queue()
    waiter = threading.Thread(target=lambda: result.put(box.wait(types={MessageType.DONE}, task="t-1", timeout=10)))
    waiter.start()
    po.send(make_message(MessageType.DONE, "sup", "w1", {"task": "t-9"}))
    done = po.send(make_message(MessageType.DONE, "sup", "w1", {"task": "t-1"}))
    waiter.join(10)
    got = result.get_nowait()
    assert got.message.id == done.id and got.path.parent.name == "cur"  # type: ignore[attr-defined]
    assert [d.message.type for d in box.list()] == [MessageType.STEER, MessageType.PROGRESS, MessageType.DONE]
    peeked = box.wait(types={MessageType.PROGRESS}, claim=False, timeout=30)
    assert peeked is not None and peeked.message.id == progress.id and peeked.path.parent.name == "new"

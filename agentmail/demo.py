"""`agentmail demo`: a supervisor and a worker process exchange a task's mail in a throw-away home."""

import multiprocessing as mp
import tempfile
from collections.abc import Callable
from pathlib import Path

from protocol import Message, MessageType, make_message

from agentmail.postoffice import PostOffice

TASK = "demo-1"
TIMEOUT = 30.0


def _line(who: str, what: str, message: Message) -> str:
    return f"[{who}] {what} {message.type.value} {message.id[-6:]} ({message.sender} -> {', '.join(message.to)})"


def _worker(home: str) -> None:
    """The worker's side: take the assignment, report, finish, and wait for the supervisor's ACK."""
    po = PostOffice(home)
    inbox = po.mailbox("worker-1")
    assignment = inbox.wait(types={MessageType.TASK_ASSIGN}, timeout=TIMEOUT)
    if assignment is None:
        raise SystemExit("worker-1: no assignment arrived")
    print(_line("worker-1", "got", assignment.message), flush=True)
    for kind, body in ((MessageType.ACCEPTED, {"title": "say hello"}),
                       (MessageType.PROGRESS, {"step": "writing hello.txt", "context_pct": 12}),
                       (MessageType.DONE, {"files": ["hello.txt"], "tests": "PASS", "summary": "said hello"})):
        sent = po.send(make_message(kind, "worker-1", "supervisor", {"task": TASK, **body}, thread=TASK,
                                    ack_required=kind is MessageType.DONE))
        print(_line("worker-1", "sent", sent), flush=True)
    ack = inbox.wait(types={MessageType.ACK}, timeout=TIMEOUT)
    if ack is None:
        raise SystemExit("worker-1: no ACK arrived")
    print(_line("worker-1", "got", ack.message), flush=True)


def run_demo(say: Callable[[str], None]) -> None:
    """Run the round trip, reporting each step through `say`; raise SystemExit if a step times out."""
    with tempfile.TemporaryDirectory(prefix="agentmail-demo-") as home:
        po = PostOffice(home)
        po.register("supervisor", role="supervisor")
        po.register("worker-1", role="worker")
        say(f"[demo] mail home {Path(home) / 'mail'}: supervisor and worker-1 registered")
        worker = mp.get_context("spawn").Process(target=_worker, args=(home,))
        worker.start()
        assign = po.send(make_message(MessageType.TASK_ASSIGN, "supervisor", "worker-1",
                                      {"task": TASK, "title": "say hello"}, thread=TASK))
        say(_line("supervisor", "sent", assign))
        inbox = po.mailbox("supervisor")
        for kind in (MessageType.ACCEPTED, MessageType.PROGRESS, MessageType.DONE):
            got = inbox.wait(types={kind}, task=TASK, timeout=TIMEOUT)
            if got is None:
                worker.kill()
                raise SystemExit(f"demo: no {kind.value} from worker-1 within {TIMEOUT} s")
            say(_line("supervisor", "got", got.message))
            if got.message.ack_required:
                say(_line("supervisor", "sent", po.ack("supervisor", got)))
        worker.join(TIMEOUT)
        say(f"[demo] worker exited with status {worker.exitcode}; round trip complete")
        if worker.exitcode != 0:
            raise SystemExit(1)

"""Bodies of the child processes that the mail concurrency tests start (real processes, real files)."""

from pathlib import Path

from protocol import MessageType, make_message

from agentmail import PostOffice

INBOX = "inbox"


def send_many(home: str, sender: str, count: int, durable: bool) -> None:
    """Send `count` PROGRESS messages numbered 0..count-1 from `sender` into the shared inbox."""
    po = PostOffice(home, durable=durable)
    for i in range(count):
        po.send(make_message(MessageType.PROGRESS, sender, INBOX, {"task": sender, "step": str(i)}))


def send_forever(home: str, sender: str) -> None:
    """Send numbered messages (with a sizeable body) until killed."""
    po = PostOffice(home, durable=False)
    filler = "x" * 20_000
    i = 0
    while True:
        po.send(make_message(MessageType.PROGRESS, sender, INBOX, {"task": sender, "step": str(i), "status": filler}))
        i += 1


def claim_all(home: str, out: str) -> None:
    """Claim from the inbox until it is empty; write the claimed ids, one a line, to `out`."""
    mailbox = PostOffice(home).mailbox(INBOX)
    claimed = []
    while (delivered := mailbox.claim()) is not None:
        claimed.append(delivered.message.id)
    Path(out).write_text("".join(f"{i}\n" for i in claimed))

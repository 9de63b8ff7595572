"""A mail server that is down holds up no supervisor step: with Agent Mail over NATS JetStream, each call waits
for the server (up to `agentmail.natslink.DEADLINE`, 30 s) before it fails, and a step makes several. So the
supervisor's calls fail at once while the connection is down (`NatsLink.fail_fast`), and while the transport knows
its connection down a step leaves out what needs mail (reading the supervisor's mailbox, judging a dead pane whose
last words may be unread, dispatch, whose every attempt starts with its assignment mail, and a released worker's
SHUTDOWN, which its grace stands in for) and does the rest (hosts, validations, merges, cancellations, time limits,
the ledger). The feed says when mail goes down and when it is back; nothing is lost meanwhile: unread mail waits
on the server, and a message handled but not yet claimed when the server went is handled again (idempotently)."""

import logging

from protocol.event import EventType
from swarmd.supervisor.state import SUPERVISOR

log = logging.getLogger("swarmd.supervisor")


class MailOutage:
    """The part of `Supervisor` that looks whether mail can be used in this step; its state (`mail_down`) is the
    loop's."""

    def fail_fast_mail(self) -> None:
        """Have this process's mail calls fail at once while the connection is down, instead of waiting (a
        transport on files has no `link`: nothing to do)."""
        link = getattr(self.post.transport, "link", None)
        if link is not None:
            link.fail_fast = True

    def mail_reachable(self) -> bool:
        """Whether this step may use mail; a change is said in the feed (once each way)."""
        down = self.post.transport.unreachable()
        if down != self.mail_down:
            self.mail_down = down
            url = getattr(getattr(self.post.transport, "settings", None), "url", "the mail server")
            summary = (f"mail server {url} unreachable: mail and dispatch wait for it, the rest goes on" if down
                       else f"mail server {url} reachable again: mail and dispatch go on")
            log.warning(summary)
            self.ledger.append(EventType.CUSTOM, SUPERVISOR, summary=summary, mail_down=down)
        return not down

"""Agent Mail: typed messages delivered as files into per-agent Maildir-style mailboxes.

    po = PostOffice(home)
    po.register("worker-1")
    po.send(make_message("STEER", "supervisor", "worker-1", {"text": "focus on the tests"}))
    delivered = po.mailbox("worker-1").wait(timeout=5)
"""

from agentmail.errors import MailboxError, MailError, MessageTooLarge, UnknownRecipient, UnsafePath
from agentmail.mailbox import Delivered, Mailbox
from agentmail.postoffice import PostOffice
from agentmail.watch import ArrivalWatch

__all__ = [
    "ArrivalWatch", "Delivered", "MailError", "Mailbox", "MailboxError", "MessageTooLarge", "PostOffice",
    "UnknownRecipient", "UnsafePath",
]

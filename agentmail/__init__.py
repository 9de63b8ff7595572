"""Agent Mail: typed messages delivered into per-agent mailboxes: Maildir-style files (the default) or NATS
JetStream (`transport = "nats://host:port"` in swarm.toml).

    po = PostOffice(home)
    po.register("worker-1")
    po.send(make_message("STEER", "supervisor", "worker-1", {"text": "focus on the tests"}))
    delivered = po.mailbox("worker-1").wait(timeout=5)

Names are imported on first use (PEP 562), so `agentmail.delivery` and `agentmail.locate` load without
the models: a worker's start-up path delivers mail with the standard library alone.
"""

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "agentmail.errors": ("MailboxError", "MailError", "MessageTooLarge", "TransportConfigError", "TransportUnavailable",
                         "UnknownRecipient", "UnsafePath"),
    "agentmail.files": ("FileTransport",),
    "agentmail.mailbox": ("Delivered", "Mailbox"),
    "agentmail.postoffice": ("PostOffice",),
    "agentmail.transport": ("MailboxAPI", "Transport"),
    "agentmail.watch": ("ArrivalWatch",),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """Import the module that holds `name` on first use; AttributeError for a name the package lacks."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'agentmail' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from agentmail.errors import (MailboxError, MailError, MessageTooLarge, TransportConfigError, TransportUnavailable,
                                  UnknownRecipient, UnsafePath)
    from agentmail.files import FileTransport
    from agentmail.mailbox import Delivered, Mailbox
    from agentmail.postoffice import PostOffice
    from agentmail.transport import MailboxAPI, Transport
    from agentmail.watch import ArrivalWatch

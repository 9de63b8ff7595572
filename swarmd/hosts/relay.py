"""An operator's reach to a worker on a host (`swarm logs`, `swarm kill`): one short-lived link to the hosts'
NATS server, a request to the host agent for the log, a stop order through the host's work queue."""

import json
import time
from collections.abc import Iterator

from protocol.ids import new_id
from protocol.messages import Message
from swarmd.config import Config
from swarmd.home import SwarmHome
from swarmd.hosts.link import NatsLink, publish_until_acked
from swarmd.hosts.names import HostError
from swarmd.hosts.settings import hosts_link
from swarmd.hosts.wire import Layout, MailOrder, RpcReply, RpcRequest, StopOrder

CONNECT_WAIT = 10.0  # seconds to wait for the server before saying it cannot be reached
REQUEST_TIMEOUT = 5.0  # seconds a host agent has to answer
FOLLOW_POLL = 0.5  # seconds between reads of a followed log that had nothing new


class Relay:
    """Raises HostError when swarm.toml names no hosts' server, or it cannot be reached within CONNECT_WAIT s."""

    def __init__(self, home: SwarmHome, config: Config) -> None:
        self.link = connect(home, config, "swarm-relay")
        self.layout = Layout(config.name)

    def close(self) -> None:
        self.link.close()

    def read_log(self, host: str, worker: str, offset: int = 0) -> RpcReply:
        """Bytes of `worker`'s log on `host` from `offset` (HostError if the host does not answer or refuses)."""
        request = RpcRequest(op="logs", worker=worker, offset=offset).model_dump_json().encode()
        try:
            msg = self.link.run(self.link.nc.request(self.layout.rpc(host), request, timeout=REQUEST_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - no responders, timeout, link down: one line for the user
            raise HostError(f"host {host} did not answer for {worker}'s log: {type(exc).__name__} {exc}".strip())
        reply = RpcReply.model_validate_json(msg.data)
        if not reply.ok:
            raise HostError(f"host {host}: {reply.error}")
        return reply

    def logs(self, host: str, worker: str, follow: bool = False) -> Iterator[str]:
        """The log's text in chunks; with `follow`, until the worker's pane has ended."""
        offset = 0
        while True:
            reply = self.read_log(host, worker, offset)
            offset = reply.offset
            if reply.data:
                yield reply.data
            elif not follow or not reply.running:
                return
            else:
                time.sleep(FOLLOW_POLL)

    def mail(self, host: str, worker: str, attempt: int, message: Message) -> None:
        """Queue `message` for `worker` (its `attempt`) on `host`: delivered into its mailbox there."""
        order = MailOrder(id=f"mail.{message.id}", worker=worker, attempt=attempt,
                          message=json.loads(message.to_json()))
        self.link.run(publish_until_acked(self.link, self.layout.orders(host), order.model_dump_json().encode(),
                                          order.id), timeout=CONNECT_WAIT)

    def stop(self, host: str, worker: str, attempt: int, reason: str) -> None:
        """Queue a stop order for `worker` on `host`, waiting for the stream to have it (the host takes it once
        it can)."""
        order = StopOrder(id=f"stop.{worker}.{new_id()}", worker=worker, attempt=attempt, reason=reason)
        self.link.run(publish_until_acked(self.link, self.layout.orders(host), order.model_dump_json().encode(),
                                          order.id), timeout=CONNECT_WAIT)


def connect(home: SwarmHome, config: Config, name: str) -> NatsLink:
    """A started link to the swarm's hosts' server, once connected. Raises HostError when swarm.toml names none,
    or it cannot be reached within CONNECT_WAIT s."""
    target = hosts_link(config, home.root)
    if target is None:
        raise HostError("this swarm has no worker hosts: set [hosts] url (or a NATS transport) in swarm.toml")
    link = NatsLink(target.url, name=name, credentials=target.credentials, ca=target.ca,
                    inbox=Layout(config.name).supervisor_inbox).start()
    if not link.ever_connected.wait(CONNECT_WAIT):
        link.close()
        raise HostError(f"cannot reach the hosts' NATS server at {target.url} (waited {CONNECT_WAIT:g} s)")
    return link

"""What each login to the hosts' NATS server may publish and subscribe to, as nats-server's `permissions` blocks.

A host speaks for its own workers only, and the server enforces it: host `a` may publish its events
(`swarm.<swarm>.events.a`), put its heartbeat key (`$KV.swarm_<swarm>_hosts.a`), make, read, pull from and ack its
own durable consumer (`host-a`, whose filter is pinned to `swarm.<swarm>.orders.a` by the create request's subject:
the server refuses a request whose body names another filter), look up the heartbeat bucket, and answer the
requests it receives (`allow_responses`); it may listen on its requests subject and its own reply inboxes only (so
it never sees another host's orders or replies), and relay the terminals opened to it (`swarm attach`: it listens on
its own `term.<host>.open` and `.in` subjects and draws on its own `.out` ones). Everything else (another host's
subject or key, another consumer, making or changing a stream) the server refuses with a permissions violation.

The supervisor's login makes the streams, the bucket and its consumer, publishes orders and requests, reads the
bucket, takes the events and opens terminals to the hosts: JetStream's API for the swarm's three streams, and its own inbox.

JetStream's API subjects (nats-server's `jsapi`): `$JS.API.STREAM.<op>.<stream>`, `$JS.API.STREAM.MSG.<op>.<stream>`,
`$JS.API.DIRECT.GET.<stream>[.<subject>]`, `$JS.API.CONSUMER.<op>.<stream>.<consumer>[.<filter>]`,
`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`, `$JS.API.CONSUMER.DURABLE.CREATE.<stream>.<consumer>`; a delivered
message is acked on its reply subject, `$JS.ACK.<stream>.<consumer>.<...>`; an ordered consumer's flow control is
answered on `$JS.FC.<stream>.<...>`; `$JS.API.INFO` is the account's JetStream usage (`swarm doctor` reads it).
The scheme is NATS's own (docs.nats.io, "Authorization": publish and subscribe allow lists, `allow_responses` for
request/reply services).
"""

from typing import Any

from agentmail.natslink import Names
from swarmd.hosts.bundles import bucket_name
from swarmd.hosts.wire import Layout


def host_permissions(layout: Layout, host: str) -> dict[str, Any]:
    """The permissions of host `host`'s login (HostError for a bad name)."""
    stream, consumer = layout.orders_stream, layout.host_consumer(host)
    return {
        "publish": {"allow": [
            layout.events(host),
            layout.host_key(host),
            f"$JS.API.STREAM.INFO.{layout.bucket_stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}.{layout.orders(host)}",
            f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
            f"$JS.ACK.{stream}.{consumer}.>",
            *bundle_access(layout.swarm),
            layout.terms("out", host),
        ]},
        "subscribe": {"allow": [f"{layout.host_inbox(host)}.>", layout.rpc(host), layout.terms("open", host),
                                layout.terms("in", host)]},
        "allow_responses": True,
    }


def supervisor_permissions(layout: Layout) -> dict[str, Any]:
    """The permissions of the supervisor's login (also `swarm hosts`, `logs`, `steer` and `kill` for remote
    workers, which log in with it), and of the swarm's Agent Mail when it runs on the same server
    (`transport = "nats://..."` with this login as `transport_credentials`: `agentmail.natslink.Names`)."""
    mail = Names(layout.swarm)
    streams = (layout.orders_stream, layout.events_stream, layout.bucket_stream, mail.mail_stream, mail.kept_stream,
               f"KV_{mail.bucket}", f"KV_{mail.claims}")
    api = [subject for stream in streams for subject in stream_api(stream)]
    return {
        "publish": {"allow": [
            layout.all_orders, f"swarm.{layout.swarm}.rpc.*", layout.terms("open"), layout.terms("in"), *api,
            f"$JS.ACK.{layout.events_stream}.>",
            f"{mail.ns}.mail.*", f"{mail.ns}.read.>", f"{mail.ns}.bad.>",
            f"$KV.{mail.bucket}.>", f"$KV.{mail.claims}.>", f"$JS.ACK.{mail.mail_stream}.>",
            f"$JS.FC.KV_{mail.bucket}.>", "$JS.API.INFO", *stream_api(f"OBJ_{bucket_name(layout.swarm)}"),
            *bundle_access(layout.swarm)]},
        "subscribe": {"allow": [f"{layout.supervisor_inbox}.>", "_INBOX.>", f"{mail.ns}.arrived.*",
                                layout.terms("out")]},
    }


def bundle_access(swarm: str) -> list[str]:
    """What a login needs to fetch, store and remove objects in the swarm's bundle bucket (`swarmd.hosts.bundles`,
    the remote attempts' git bundles) once the supervisor has made it: nats-py's object store looks the stream up,
    reads an object's meta (`$O.<bucket>.M.<name>`) by a direct or stream get, reads its chunks
    (`$O.<bucket>.C.<id>`) through an ordered consumer (found by subject: the stream names' lookup, which lists
    the account's names), and stores both by publishing; removing one purges its chunks. Objects are not kept per
    host: a host could overwrite another's, and the supervisor takes only the object named for the exact attempt
    it waits for."""
    bucket = bucket_name(swarm)
    stream = f"OBJ_{bucket}"
    return [f"$O.{bucket}.C.>", f"$O.{bucket}.M.>", f"$JS.API.STREAM.INFO.{stream}", "$JS.API.STREAM.NAMES",
            f"$JS.API.STREAM.MSG.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}.>",
            f"$JS.API.STREAM.PURGE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.>",
            f"$JS.API.CONSUMER.DELETE.{stream}.>", f"$JS.FC.{stream}.>"]


def stream_api(stream: str) -> list[str]:
    """JetStream's API subjects about `stream` and its consumers: all a login that owns the stream may call."""
    return [f"$JS.API.STREAM.*.{stream}", f"$JS.API.STREAM.MSG.*.{stream}", f"$JS.API.DIRECT.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}.>", f"$JS.API.CONSUMER.*.{stream}", f"$JS.API.CONSUMER.*.{stream}.>",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>", f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>"]

"""The JetStream streams and key-value bucket of one swarm's hosts, made (or found) on each connection.

The supervisor's side makes them (its login may; a host's may not: `swarmd.hosts.permissions`) and sets the
bucket's TTL to its `[hosts] ttl`; a host only looks them up, again and again until they are there, so either may
still start first (the host reads the TTL from the bucket and beats three times per TTL). The bucket takes no
rollup headers: a put carrying `Nats-Rollup: all` would otherwise wipe every other host's key."""

from typing import Any

from swarmd.hosts.names import HOST_NAME_RE
from swarmd.hosts.wire import HostBeat, Layout

DUPLICATE_WINDOW = 600.0  # seconds a message id is remembered: a retried publish within it is stored once
ACK_WAIT = 10.0  # seconds a consumer has to ack a message before the stream delivers it again (one delivered
# to a pull request of a connection that was cut off is lost with it: this is how soon it comes again)
DEFAULT_TTL = 15.0  # seconds, when a host makes the bucket before any supervisor has


async def ensure_streams(js: Any, layout: Layout) -> None:
    """Make the orders and events streams (work queues on file storage) if they are missing."""
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig

    for name, subject in ((layout.orders_stream, layout.all_orders), (layout.events_stream, layout.all_events)):
        config = StreamConfig(name=name, subjects=[subject], retention=RetentionPolicy.WORK_QUEUE,
                              storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW)
        await js.add_stream(config)


async def ensure_bucket(js: Any, layout: Layout, ttl: float | None) -> Any:
    """The hosts' heartbeat bucket, made with `ttl` (or DEFAULT_TTL) if missing; an existing one gets `ttl` as its
    max age when given and different, and loses rollups if it allowed them. Returns nats-py's KeyValue."""
    from nats.js.api import KeyValueConfig, StorageType
    from nats.js.errors import BucketNotFoundError, NotFoundError

    try:
        kv = await js.key_value(layout.bucket)
    except (BucketNotFoundError, NotFoundError):
        kv = await js.create_key_value(KeyValueConfig(bucket=layout.bucket, history=1, ttl=ttl or DEFAULT_TTL,
                                                      storage=StorageType.FILE))
    config = (await js.stream_info(layout.bucket_stream)).config
    if config.allow_rollup_hdrs or (ttl is not None and abs((config.max_age or 0) - ttl) > 1e-3):
        config.allow_rollup_hdrs = False
        if ttl is not None:
            config.max_age = ttl
            config.duplicate_window = min(config.duplicate_window or ttl, ttl)  # never over the max age
        await js.update_stream(config)
    return kv


async def existing_ttl(js: Any, layout: Layout) -> float | None:
    """The TTL in seconds of the hosts' bucket if it exists already, else None."""
    from nats.js.errors import BucketNotFoundError, NotFoundError

    try:
        return await bucket_ttl(await js.key_value(layout.bucket))
    except (BucketNotFoundError, NotFoundError):
        return None


async def bucket_ttl(kv: Any) -> float:
    """The bucket's TTL in seconds."""
    return float((await kv.status()).ttl or DEFAULT_TTL)


async def bucket_beats(js: Any, kv: Any, layout: Layout) -> dict[str, HostBeat]:
    """Every host's beat in the hosts' bucket now (host name -> beat); a key that expired or was deleted between
    the listing and its read, one that is no host's name, and a value that is no beat of the host its key names
    are left out. Raises nats-py's errors when the server does not answer. Listed by
    `agentmail.natslink.bucket_keys`, never nats-py's `KeyValue.keys()` (which can list none of the keys
    there): a host whose key is there must never be read as down."""
    from nats.js.errors import KeyNotFoundError

    from agentmail.natslink import bucket_keys

    beats = {}
    for key in await bucket_keys(js, layout.bucket):
        if not HOST_NAME_RE.fullmatch(key):
            continue
        try:
            beat = HostBeat.model_validate_json((await kv.get(key)).value or b"")
        except (KeyNotFoundError, ValueError):  # expired or deleted meanwhile (KeyDeletedError is one), or no beat
            continue
        if beat.name == key:
            beats[key] = beat
    return beats


async def pull(js: Any, subject: str, durable: str, stream: str) -> Any:
    """A pull subscription on `subject` through the durable consumer `durable` (explicit acks, ACK_WAIT)."""
    from nats.js.api import AckPolicy, ConsumerConfig

    config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT,
                            filter_subject=subject)
    return await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)

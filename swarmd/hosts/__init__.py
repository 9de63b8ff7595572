"""Worker hosts: machines that run a swarm's workers for a supervisor elsewhere, joined through NATS JetStream.

A host agent (`swarm host join`, `agent.py`) owns its machine's private tmux server and starts and stops workers
on the supervisor's orders (a JetStream work queue per host), forwards its workers' mail and pane deaths as
events, and heartbeats through a key-value bucket whose keys expire: a host whose key has expired is down.
The supervisor's side of the same wire is `client.py`; `wire.py` holds the names and the messages both speak.
"""

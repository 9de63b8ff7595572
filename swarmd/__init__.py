"""swarmd: a swarm of coding agents in tmux, with typed Agent Mail and an append-only ledger."""

__version__ = "0.1.0"

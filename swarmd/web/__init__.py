"""The web face: a dashboard of one swarm home (board, feed, registry, panes) with the operator's actions,
a thin layer over `swarmd.operate` and the ledger. `swarmd.web.server` serves it (starlette + uvicorn)."""

"""The swarm as an MCP server: the board, feed, registry, swarm, mail and reservation tools of the Vers
coordination skill, over the library API (`swarmd.operate`, the Ledger, agentmail's PostOffice).

Importing this package is cheap: the MCP SDK is only imported by `swarmd.mcp.server`.
"""

from swarmd.mcp.config import worker_mcp_config

__all__ = ["worker_mcp_config"]

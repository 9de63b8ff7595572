"""`python -m swarmd.mcp`: the stdio MCP server, as `swarm mcp` runs it, without loading the CLI."""

import sys

from swarmd.mcp.server import main

if __name__ == "__main__":
    sys.exit(main())

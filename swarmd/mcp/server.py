"""The stdio MCP server (`swarm mcp`, `python -m swarmd.mcp`), built on the official SDK's MCPServer.

Every tool is a method of one of the tool classes; a refusal of the library (a SwarmError, a protocol or
mail error) becomes an MCP tool error of one line, never a traceback.
"""

import functools
import sys
from collections.abc import Callable
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from pydantic import ValidationError

from agentmail.errors import MailError
from protocol.errors import ProtocolError
from protocol.messages import describe_validation_error
from swarmd.errors import SwarmError
from swarmd.mcp import ledger_tools, mail_tools, reservation_tools, swarm_tools
from swarmd.mcp.context import ToolContext

USER_ERRORS = (SwarmError, ProtocolError, MailError, OSError)
INSTRUCTIONS = ("The swarm's board, feed, registry, mail and (for the coordinator) swarm tools. You act as the "
                "agent this server was started for; tools never take your identity as an argument.")


def _one_line(fn: Callable[..., str]) -> Callable[..., str]:
    """The tool `fn` with library refusals turned into a ToolError carrying their one line."""
    @functools.wraps(fn)
    def tool(*args: Any, **kwargs: Any) -> str:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            text = f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ") if isinstance(exc, OSError) \
                and not isinstance(exc, SwarmError) else str(exc)
            raise ToolError(text.splitlines()[0] if text else type(exc).__name__) from None
    return tool


class SwarmServer(MCPServer):
    """MCPServer whose refusal of a call's arguments (the SDK validates them first) says it in one line."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                line = describe_validation_error(exc.__cause__).replace("invalid message", "invalid arguments", 1)
                raise ToolError(f"{name}: {line}") from None
            raise


def build_server(ctx: ToolContext) -> MCPServer:
    """An MCPServer with every tool bound to `ctx`; mail_send advertises the protocol's schema."""
    tools = []
    for module, owner in ((ledger_tools, ledger_tools.LedgerTools(ctx)), (swarm_tools, swarm_tools.SwarmTools(ctx)),
                          (mail_tools, mail_tools.MailTools(ctx)),
                          (reservation_tools, reservation_tools.ReservationTools(ctx))):
        for name in module.TOOL_NAMES:
            tool = Tool.from_function(_one_line(getattr(owner, name)), name=name, structured_output=False)
            if name == "mail_send":
                tool.parameters = mail_tools.send_schema()
            tools.append(tool)
    return SwarmServer("swarm", instructions=INSTRUCTIONS, log_level="WARNING", tools=tools)


def main() -> int:
    """Serve over stdio until the client closes it; 2 with one line on stderr if the server cannot start."""
    try:
        ctx = ToolContext.from_env()
    except (SwarmError, ProtocolError) as exc:
        print(f"swarm mcp: error: {exc}", file=sys.stderr)
        return 2
    build_server(ctx).run("stdio")
    return 0

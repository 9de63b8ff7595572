"""The mail tools over agentmail's PostOffice: this agent sends, lists, reads, acknowledges and waits for
typed messages. mail_send's input schema is the protocol's: each message type's body model, from pydantic."""

from typing import Any

from agentmail.errors import MailError
from protocol.messages import BODY_MODELS, MessageType, make_message
from swarmd.mcp.context import ToolContext, to_json

WAIT_LIMIT = 3600.0  # seconds mail_wait may block at most


class MailTools:
    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    def _mailbox(self) -> Any:
        me, post = self.ctx.identity.agent, self.ctx.post
        if me in post.agents():
            return post.mailbox(me)
        return post.register(me, role="coordinator" if self.ctx.identity.coordinator else "worker")

    def mail_send(self, type: MessageType, to: list[str], body: dict[str, Any] | None = None,
                  task: str | None = None, ack_required: bool = False, reply_to: str | None = None) -> str:
        """Send a typed message from this agent (`role:NAME` broadcasts to a role); returns it."""
        body = dict(body or {})
        envelope: dict[str, Any] = {"ack_required": ack_required, "reply_to": reply_to}
        if task:
            body["task"] = task
            envelope["thread"] = task
        self._mailbox()
        message = self.ctx.post.send(make_message(type, self.ctx.identity.agent, to, body, **envelope))
        return message.to_json()

    def mail_inbox(self) -> str:
        """This agent's unread messages, oldest first (as `agentmail inbox AGENT --json`)."""
        return to_json([_delivered(d) for d in self._mailbox().list()])

    def mail_read(self, messageId: str | None = None) -> str:
        """Claim and return one unread message: the oldest, or `messageId` (as `agentmail read --json`)."""
        delivered = self._mailbox().claim(messageId)
        if delivered is None:
            raise MailError(f"no unread {'message ' + messageId if messageId else 'messages'} "
                            f"for {self.ctx.identity.agent}")
        return delivered.message.to_json()

    def mail_ack(self, messageId: str) -> str:
        """Acknowledge a message this agent has read; the ACK goes to its sender. Returns the ACK."""
        delivered = self._mailbox().read_claimed(messageId)
        if delivered is None:
            raise MailError(f"{self.ctx.identity.agent} has no read message {messageId}: mail_read it first")
        return self.ctx.post.ack(self.ctx.identity.agent, delivered).to_json()

    def mail_wait(self, types: list[MessageType] | None = None, task: str | None = None,
                  timeoutSeconds: float = 60.0) -> str:
        """Block until a message of one of `types` (about `task`) is unread, then claim and return it."""
        delivered = self._mailbox().wait(types=set(types) if types else None, task=task,
                                         timeout=min(max(0.0, timeoutSeconds), WAIT_LIMIT))
        if delivered is None:
            raise MailError(f"no matching message for {self.ctx.identity.agent} within {timeoutSeconds:g} s")
        return delivered.message.to_json()


def _delivered(delivered: Any) -> dict[str, Any]:
    return {"seq": delivered.seq, "file": delivered.name,
            "message": delivered.message.model_dump(mode="json", by_alias=True, exclude_none=True)}


def send_schema() -> dict[str, Any]:
    """mail_send's input schema: `type` one of the message types and `body` one of their body models (each
    titled by its type), with the protocol's own field types and descriptions."""
    defs: dict[str, Any] = {}
    bodies = []
    for kind, model in BODY_MODELS.items():
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        schema["title"] = f"{kind.value} body"
        schema.setdefault("properties", {}).pop("task", None)  # the `task` argument fills it
        schema["required"] = [r for r in schema.get("required", []) if r != "task"]
        defs[f"{kind.value}_body"] = schema
        bodies.append({"$ref": f"#/$defs/{kind.value}_body"})
    return {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": [k.value for k in MessageType], "description": "The message type."},
            "to": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                   "description": "Recipient agents, or role:NAME for every agent of a role."},
            "body": {"anyOf": bodies, "description": "The body of that type (see each type's fields)."},
            "task": {"type": "string", "description": "The task it is about: sets the thread and body.task."},
            "ack_required": {"type": "boolean", "default": False},
            "reply_to": {"type": "string", "description": "The id of the message this answers."},
        },
        "required": ["type", "to"],
        "$defs": defs,
    }


TOOL_NAMES = ("mail_send", "mail_inbox", "mail_read", "mail_ack", "mail_wait")

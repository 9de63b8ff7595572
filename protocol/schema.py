"""JSON Schema for every model, generated from the pydantic models (the one source of truth)."""

from typing import Any

from pydantic import BaseModel, Field, create_model

from protocol.agent import RegistryEntry
from protocol.errors import ProtocolError
from protocol.event import Event
from protocol.messages import BODY_MODELS, Message, MessageType
from protocol.task import Task


def _message_model(kind: MessageType) -> type[BaseModel]:
    """The envelope with `body` narrowed to this type's model."""
    return create_model(  # type: ignore[call-overload]
        f"{kind.value.title().replace('_', '')}Message",
        __base__=Message,
        body=(BODY_MODELS[kind], Field(...)),
    )


OTHER_MODELS: dict[str, type[BaseModel]] = {"task": Task, "event": Event, "registry_entry": RegistryEntry}


def schema_names() -> list[str]:
    return [k.value for k in MessageType] + list(OTHER_MODELS)


def json_schema(name: str | None = None) -> dict[str, Any]:
    """The schema of one message type or model by name; with no name, all of them keyed by name."""
    if name is None:
        return {n: json_schema(n) for n in schema_names()}
    if name.upper() in MessageType.__members__:
        return _message_model(MessageType(name.upper())).model_json_schema(by_alias=True)
    if name.lower() in OTHER_MODELS:
        return OTHER_MODELS[name.lower()].model_json_schema()
    raise ProtocolError(f"unknown schema {name!r}: choose one of {', '.join(schema_names())}")

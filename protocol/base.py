"""The base of every protocol model, and the field types built on the name checks of `protocol.names`."""

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from protocol.names import validate_agent_name, validate_label, validate_recipient, validate_task_id


class Model(BaseModel):
    # A model's validator is built on first use, not at import: a worker that sends three kinds of message
    # should not pay for building all thirty models at start-up.
    model_config = ConfigDict(defer_build=True)


AgentName = Annotated[str, AfterValidator(validate_agent_name)]
TaskId = Annotated[str, AfterValidator(validate_task_id)]
Recipient = Annotated[str, AfterValidator(validate_recipient)]
Label = Annotated[str, AfterValidator(validate_label)]

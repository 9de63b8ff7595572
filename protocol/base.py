"""The base of every protocol model."""

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    # A model's validator is built on first use, not at import: a worker that sends three kinds of message
    # should not pay for building all thirty models at start-up.
    model_config = ConfigDict(defer_build=True)

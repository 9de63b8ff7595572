"""The protocol models: envelope, bodies, ids, names, the task status table and the JSON Schema."""

import json
import random
from datetime import datetime
from typing import Any

import pytest

from protocol.errors import InvalidMessage, InvalidName, InvalidTransition
from protocol.filters import by_task, by_type, completions, failures, pending_acks, successes
from protocol.ids import new_id
from protocol.messages import ACK_ALWAYS, BODY_MODELS, Message, MessageType, make_message, parse_message
from protocol.names import validate_agent_name, validate_recipient, validate_task_id
from protocol.schema import OTHER_MODELS, json_schema, schema_names
from protocol.task import FINAL_STATUSES, TRANSITIONS, Task, TaskStatus, check_transition

T = MessageType
S = TaskStatus

# One representative body per type, with every field that matters set to a non-default value.
BODIES: dict[MessageType, dict[str, Any]] = {
    T.TASK_ASSIGN: {"task": "task-1", "title": "Write the parser", "description": "See DESIGN.md", "attempt": 2,
                    "max_attempts": 4, "prompt_file": "prompts/task-1.md", "retry_context": "tests failed"},
    T.ACCEPTED: {"task": "task-1", "title": "Write the parser", "started_at": "2024-05-06T07:08:09+00:00"},
    T.PROGRESS: {"task": "task-1", "step": "writing tests", "status": "3 of 5", "context_pct": 45.5,
                 "files": ["a.py", "b.py"]},
    T.HELP_REQUEST: {"task": "task-1", "kind": "SPEC_UNCLEAR", "problem": "two specs disagree", "tried": "both",
                     "files": ["spec.md"], "question": "which one wins?"},
    T.HELP_RESPONSE: {"task": "task-1", "answer": "the newer one", "request_id": "01HZX"},
    T.OFFERING_READY: {"task": "task-1", "commit": "abc123", "files": ["a.py"], "tests": "PASS", "summary": "ok"},
    T.DONE: {"task": "task-1", "commit": "abc123", "files": ["a.py"], "tests": "PASS", "lint": "SKIP",
             "build": "FAIL", "summary": "all done"},
    T.FAILED: {"task": "task-1", "failure": "TESTS_FAIL", "reason": "3 tests fail", "attempts": 2,
               "partial_commit": "def456", "files": ["a.py"], "recommendation": "split the task"},
    T.CHECKPOINT: {"task": "task-1", "reason": "CONTEXT_HIGH", "commit": "abc", "done": "parser",
                   "remaining": "tests", "next_steps": "write tests"},
    T.SPAWN_REQUEST: {"task": "task-1", "profile": "codex", "count": 2, "reason": "parallel tests"},
    T.SPAWN_ACK: {"request_id": "01HZX", "accepted": False, "agents": ["worker-3"], "reason": "swarm full"},
    T.ACK: {"message_id": "01HZX"},
    T.STEER: {"text": "focus on the tests", "task": "task-1"},
    T.SHUTDOWN: {"reason": "plan finished"},
    T.AGENT_STATE: {"task": "task-1", "state": "rate_limited", "detail": "limit reached",
                    "resets_at": "2024-05-06T08:00:00+00:00", "session_id": "s-1",
                    "usage": {"input_tokens": 1200, "output_tokens": 34, "cost_usd": 0.0123}},
}


def test_bodies_cover_every_type() -> None:
    assert set(BODIES) == set(MessageType) == set(BODY_MODELS)


# -- envelope ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MessageType))
def test_envelope_round_trip(kind: MessageType) -> None:
    msg = make_message(kind, "worker-1", ["supervisor", "role:operator"], BODIES[kind], thread="task-1",
                       reply_to="01PREV", ack_required=True)
    back = parse_message(msg.to_json())
    assert back == msg
    assert isinstance(back.body, BODY_MODELS[kind])
    assert type(back.body).model_validate(BODIES[kind]) == back.body
    assert back.body.model_fields_set >= set(BODIES[kind])
    assert parse_message(msg.to_json().encode()) == msg
    assert parse_message(json.loads(msg.to_json())) == msg


def test_json_uses_from_not_sender_and_omits_none() -> None:
    data = json.loads(make_message(T.SHUTDOWN, "supervisor", "worker-1").to_json())
    assert data["from"] == "supervisor" and "sender" not in data
    assert "thread" not in data and "origin" not in data


def test_extra_body_fields_are_kept() -> None:
    msg = make_message(T.DONE, "worker-1", "supervisor", {"task": "t1", "coverage": "91%"})
    assert parse_message(msg.to_json()).body.model_extra == {"coverage": "91%"}


def test_task_property_prefers_thread() -> None:
    assert make_message(T.DONE, "w1", "sup", {"task": "t1"}).task == "t1"
    assert make_message(T.DONE, "w1", "sup", {"task": "t1"}, thread="t2").task == "t2"
    assert make_message(T.ACK, "w1", "sup", {"message_id": "x"}).task is None


# -- ids ---------------------------------------------------------------------------------------------------


def test_ids_are_unique() -> None:
    ids = [new_id() for _ in range(2000)] + [new_id(now_ms=1_700_000_000_000) for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 for i in ids)


def test_ids_sort_by_time() -> None:
    times = list(range(1_700_000_000_000, 1_700_000_000_000 + 500_000, 997)) + [0, 1, 2**47]
    made = [(ms, new_id(now_ms=ms)) for ms in times]
    random.Random(7).shuffle(made)
    assert [ms for ms, _ in sorted(made, key=lambda pair: pair[1])] == sorted(times)


def test_message_ids_are_valid_envelope_ids() -> None:
    msg = make_message(T.SHUTDOWN, "supervisor", "w1")
    assert msg.id and msg.id != make_message(T.SHUTDOWN, "supervisor", "w1").id


# -- ack_required --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(ACK_ALWAYS))
def test_ack_forced_for_help_and_offering(kind: MessageType) -> None:
    assert ACK_ALWAYS == {T.HELP_REQUEST, T.OFFERING_READY}
    assert make_message(kind, "w1", "sup", BODIES[kind], ack_required=False).ack_required is True
    raw = json.loads(make_message(kind, "w1", "sup", BODIES[kind]).to_json()) | {"ack_required": False}
    assert parse_message(raw).ack_required is True


def test_ack_optional_elsewhere() -> None:
    assert make_message(T.PROGRESS, "w1", "sup", BODIES[T.PROGRESS]).ack_required is False
    assert make_message(T.PROGRESS, "w1", "sup", BODIES[T.PROGRESS], ack_required=True).ack_required is True


# -- invalid input -------------------------------------------------------------------------------------------

GOOD: dict[str, Any] = {"type": "DONE", "from": "worker-1", "to": ["supervisor"], "body": {"task": "t1"}}


@pytest.mark.parametrize(("change", "names"), [
    ({"from": "Worker 1"}, ["from", "invalid agent name"]),
    ({"from": "../etc"}, ["from", "invalid agent name"]),
    ({"body": {}}, ["body.task", "required"]),
    ({"body": {"task": ""}}, ["body.task"]),
    ({"type": "FINISHED"}, ["type", "DONE"]),
    ({"type": "HELP_REQUEST", "body": {"task": "t1", "kind": "PANIC"}}, ["body.kind", "STUCK"]),
    ({"type": "PROGRESS", "body": {"task": "t1", "context_pct": 140}}, ["body.context_pct"]),
    ({"ts": "2024-01-01T00:00:00"}, ["ts", "UTC offset"]),
    ({"to": []}, ["to", "at least 1"]),
    ({"to": ["role:../x"]}, ["to.0", "invalid agent name"]),
    ({"id": "a/b"}, ["id"]),
])
def test_invalid_message_names_the_field(change: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_message(GOOD | change)
    text = str(info.value)
    assert "\n" not in text
    for name in names:
        assert name in text


def test_invalid_json_is_invalid_message() -> None:
    with pytest.raises(InvalidMessage):
        parse_message("{not json")
    with pytest.raises(InvalidMessage):
        parse_message(b"[]")


def test_good_message_is_accepted() -> None:
    msg = parse_message(GOOD | {"to": ["role:worker", "supervisor"]})
    assert msg.sender == "worker-1" and msg.to == ["role:worker", "supervisor"]
    assert isinstance(msg, Message) and msg.ts.tzinfo is not None


# -- names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", ".", "..", "/", "a/b", "../x", "a" * 65, "Worker", "wOrker", "-a", ".a",
                                  "a b", "a\n", "role:worker", "é"])
def test_bad_agent_names(name: str) -> None:
    with pytest.raises(InvalidName, match="invalid agent name"):
        validate_agent_name(name)


@pytest.mark.parametrize("name", ["a", "w1", "worker-1", "a.b_c-d", "0", "a" * 64, "a.."])
def test_good_agent_names(name: str) -> None:
    assert validate_agent_name(name) == name


@pytest.mark.parametrize("task_id", ["", ".", "..", "/", "a/b", "../x", "t" * 129, "-t", "a b", "t\x00"])
def test_bad_task_ids(task_id: str) -> None:
    with pytest.raises(InvalidName, match="invalid task id"):
        validate_task_id(task_id)


@pytest.mark.parametrize("task_id", ["t", "task-42", "Task_42.b", "t" * 128])
def test_good_task_ids(task_id: str) -> None:
    assert validate_task_id(task_id) == task_id


def test_recipients() -> None:
    assert validate_recipient("role:worker") == "role:worker"
    assert validate_recipient("supervisor") == "supervisor"
    for bad in ("role:../x", "role:", "role:Worker", "role:a/b", "ROLE:worker"):
        with pytest.raises(InvalidName):
            validate_recipient(bad)


def test_error_message_escapes_control_characters() -> None:
    with pytest.raises(InvalidName) as info:
        validate_agent_name("bad\nname")
    assert "\n" not in str(info.value)


# -- task status -----------------------------------------------------------------------------------------------


def test_transition_table_is_complete() -> None:
    assert set(TRANSITIONS) == set(TaskStatus)


def test_done_cannot_go_back_to_work() -> None:
    with pytest.raises(InvalidTransition) as info:
        check_transition("task-1", S.DONE, S.IN_PROGRESS)
    assert "task-1" in str(info.value) and "reopen" in str(info.value)


@pytest.mark.parametrize(("old", "new"), [
    (S.DONE, S.OPEN), (S.OPEN, S.ASSIGNED), (S.ASSIGNED, S.IN_PROGRESS), (S.IN_PROGRESS, S.VALIDATING),
    (S.VALIDATING, S.DONE), (S.IN_PROGRESS, S.OPEN), (S.BLOCKED, S.OPEN), (S.CANCELLED, S.OPEN),
    (S.DONE, S.DONE), (S.OPEN, S.OPEN),
])
def test_allowed_transitions(old: TaskStatus, new: TaskStatus) -> None:
    check_transition("t", old, new)


@pytest.mark.parametrize(("old", "new"), [
    (S.DONE, S.IN_PROGRESS), (S.DONE, S.ASSIGNED), (S.DONE, S.CANCELLED), (S.CANCELLED, S.DONE),
    (S.BLOCKED, S.IN_PROGRESS), (S.OPEN, S.VALIDATING),
])
def test_refused_transitions(old: TaskStatus, new: TaskStatus) -> None:
    with pytest.raises(InvalidTransition, match=f"from {old} to {new}"):
        check_transition("t", old, new)


@pytest.mark.parametrize("old", sorted(FINAL_STATUSES))
def test_final_statuses_can_be_reopened(old: TaskStatus) -> None:
    check_transition("t", old, S.OPEN)


def test_task_ids_in_tasks_are_validated() -> None:
    assert Task(id="task-1", title="x", blocked_by=["task-0"]).is_ready(set()) is False
    assert Task(id="task-1", title="x", blocked_by=["task-0"]).is_ready({"task-0"}) is True
    with pytest.raises(ValueError, match="invalid task id"):
        Task(id="../x", title="x")


# -- JSON Schema -------------------------------------------------------------------------------------------------


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema["$defs"][ref.rsplit("/", 1)[1]] if ref else node


def _check_required(schema: dict[str, Any], node: dict[str, Any], data: dict[str, Any], where: str) -> None:
    """Without jsonschema: every required key is present, recursively through object properties."""
    node = _resolve(schema, node)
    for key in node.get("required", []):
        assert key in data, f"{where}{key} is required by the schema"
    for key, sub in node.get("properties", {}).items():
        if isinstance(data.get(key), dict):
            _check_required(schema, sub, data[key], f"{where}{key}.")


def _validate(schema: dict[str, Any], data: dict[str, Any]) -> None:
    try:
        import jsonschema
    except ImportError:
        _check_required(schema, schema, data, "")
    else:
        jsonschema.validate(data, schema)


@pytest.mark.parametrize("name", schema_names())
def test_schema_has_properties(name: str) -> None:
    schema = json_schema(name)
    assert isinstance(schema, dict) and schema["properties"]
    json.dumps(schema)


@pytest.mark.parametrize("kind", list(MessageType))
def test_message_matches_its_schema(kind: MessageType) -> None:
    schema = json_schema(kind.value)
    assert {"from", "to", "type", "body"} <= set(schema["required"])
    body = _resolve(schema, schema["properties"]["body"])
    assert set(body["properties"]) == set(BODY_MODELS[kind].model_fields)
    _validate(schema, json.loads(make_message(kind, "w1", "sup", BODIES[kind]).to_json()))


def test_schema_required_check_can_fail() -> None:
    schema = json_schema("DONE")
    data = json.loads(make_message(T.DONE, "w1", "sup", BODIES[T.DONE]).to_json())
    del data["body"]["task"]
    with pytest.raises(Exception, match="task"):
        _validate(schema, data)


@pytest.mark.parametrize("name", sorted(OTHER_MODELS))
def test_other_models_match_their_schema(name: str) -> None:
    samples = {
        "task": Task(id="t1", title="x"),
        "event": OTHER_MODELS["event"](agent="supervisor", type="task_created", task="t1"),
        "registry_entry": OTHER_MODELS["registry_entry"](name="worker-1", started=datetime.now().astimezone()),
    }
    _validate(json_schema(name), json.loads(samples[name].model_dump_json()))


def test_unknown_schema_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown schema"):
        json_schema("nope")
    assert json_schema("done") == json_schema("DONE")
    assert set(json_schema()) == set(schema_names())


# -- filters -------------------------------------------------------------------------------------------------------


def _mail() -> list[Message]:
    return [
        make_message(T.PROGRESS, "w1", "sup", {"task": "t1"}),
        make_message(T.DONE, "w1", "sup", {"task": "t1"}),
        make_message(T.HELP_REQUEST, "w2", "sup", {"task": "t2"}),
        make_message(T.FAILED, "w2", "sup", {"task": "t2"}),
        make_message(T.OFFERING_READY, "w3", "sup", {"task": "t3"}),
        make_message(T.STEER, "sup", "w3", {"text": "go"}, thread="t3"),
        make_message(T.SHUTDOWN, "sup", "w1", ack_required=True),
    ]


def test_completion_filters_keep_order() -> None:
    msgs = _mail()
    assert [m.type for m in completions(iter(msgs))] == [T.DONE, T.FAILED, T.OFFERING_READY]
    assert [m.type for m in successes(msgs)] == [T.DONE, T.OFFERING_READY]
    assert [m.type for m in failures(msgs)] == [T.FAILED]
    assert by_type(msgs, T.SHUTDOWN, "PROGRESS") == [msgs[0], msgs[6]]
    assert by_type(msgs) == []


def test_by_task_reads_thread_and_body() -> None:
    msgs = _mail()
    assert by_task(msgs, "t1") == msgs[:2]
    assert by_task(msgs, "t3") == msgs[4:6]
    assert by_task(msgs, "t9") == []


def test_pending_acks() -> None:
    msgs = _mail()
    help_request, offering, shutdown = msgs[2], msgs[4], msgs[6]
    assert pending_acks(msgs) == [help_request, offering, shutdown]
    acks = [make_message(T.ACK, "sup", "w2", {"message_id": help_request.id}),
            make_message(T.ACK, "w1", "sup", {"message_id": shutdown.id}, ack_required=True)]
    assert pending_acks(iter(msgs + acks)) == [offering]
    assert pending_acks(acks) == []


def test_inert_text_shows_control_characters_and_keeps_the_rest() -> None:
    from protocol.text import inert

    assert inert("\x1b[31mred\x1b]0;title\x07 ok\r\n\x9b") == "\\x1b[31mred\\x1b]0;title\\x07 ok\\r\\n\\x9b"
    assert inert("naïve [bold]markup[/] — ✓") == "naïve [bold]markup[/] — ✓"

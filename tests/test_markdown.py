"""The markdown form of mail: subject forms, field aliases, sections, strictness, round trip and fuzzing."""

import re
import types
import typing
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import InvalidMessage
from protocol.markdown import UNKNOWN, ParsedMail, parse_markdown, to_markdown
from protocol.messages import (
    BODY_MODELS,
    CheckpointReason,
    CheckResult,
    FailureType,
    HelpKind,
    Message,
    MessageType,
    make_message,
)
from protocol.names import AGENT_NAME_RE, TASK_ID_RE

T = MessageType


def parse(text: str, **kwargs: Any) -> ParsedMail:
    return parse_markdown(text, sender=kwargs.pop("sender", "worker-1"), to=kwargs.pop("to", ["supervisor"]),
                          **kwargs)


# -- subject -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", [
    "[task-42] PROGRESS", "Subject: [task-42] PROGRESS", "subject:[task-42] progress", "# [task-42] PROGRESS",
    "## [task-42] Progress", "**[task-42] PROGRESS**", "task-42: PROGRESS", "Subject: task-42: PROGRESS",
    "# task-42: progress", "[task-42] PROGRESS - halfway there", "  [ task-42 ]   PROGRESS",
    "**Subject:** [task-42] PROGRESS", "# **[task-42] PROGRESS**",
])
def test_subject_forms(subject: str) -> None:
    mail = parse(f"{subject}\nStep: tests\n")
    assert (mail.type, mail.task, mail.problems) == (T.PROGRESS, "task-42", [])
    assert mail.fields == {"step": "tests"}
    assert mail.message is not None and mail.message.body.task == "task-42"


@pytest.mark.parametrize("subject", ["PROGRESS", "progress", "# Progress", "Subject: PROGRESS", "Type: progress"])
def test_bare_type_takes_the_task_from_a_header(subject: str) -> None:
    mail = parse(f"{subject}\nTask: task-7\nStep: tests")
    assert (mail.type, mail.task, mail.fields) == (T.PROGRESS, "task-7", {"step": "tests"})


@pytest.mark.parametrize(("word", "kind"), [
    ("help request", T.HELP_REQUEST), ("HELP-REQUEST", T.HELP_REQUEST), ("Help_Request", T.HELP_REQUEST),
    ("help", T.HELP_REQUEST), ("offering ready", T.OFFERING_READY), ("task-assign", T.TASK_ASSIGN),
    ("Done.", T.DONE), ("completed", T.DONE), ("failed", T.FAILED), ("spawn ack", T.SPAWN_ACK), ("ack", T.ACK),
])
def test_type_spellings(word: str, kind: MessageType) -> None:
    assert parse(f"[t1] {word}").type == kind


def test_headers_may_come_before_the_subject() -> None:
    mail = parse_markdown("From: worker-2\nTo: supervisor, role:operator\nSubject: [t1] DONE\nCommit: abc")
    assert (mail.type, mail.task, mail.sender, mail.to) == (T.DONE, "t1", "worker-2", ["supervisor", "role:operator"])
    assert mail.message is not None and mail.message.body.commit == "abc"


def test_a_field_line_is_not_a_subject() -> None:
    mail = parse("Status: DONE\nStep: 3")
    assert mail.type == UNKNOWN and mail.fields == {"status": "DONE", "step": "3"} and mail.message is None


def test_unknown_type() -> None:
    mail = parse("[task-1] CELEBRATE\nMood: great\nParty at five.")
    assert (mail.type, mail.task, mail.message) == (UNKNOWN, "task-1", None)
    assert mail.fields == {"mood": "great", "text": "Party at five."}
    assert "unknown message type" in mail.problems[0]
    with pytest.raises(InvalidMessage, match="unknown message type.*CELEBRATE"):
        parse("[task-1] CELEBRATE", strict=True)


def test_no_subject() -> None:
    mail = parse("just some words\nand more")
    assert mail.type == UNKNOWN and mail.task is None and mail.fields == {"text": "just some words\nand more"}
    with pytest.raises(InvalidMessage, match="no subject"):
        parse("just some words", strict=True)


# -- fields and aliases ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "line", "name", "value"), [
    (T.PROGRESS, "Context: 45%", "context_pct", 45.0),
    (T.PROGRESS, "Context Usage: ~60 %", "context_pct", 60.0),
    (T.PROGRESS, "context-usage: 12.5", "context_pct", 12.5),
    (T.PROGRESS, "CONTEXT_PCT: 80% (160k tokens)", "context_pct", 80.0),
    (T.PROGRESS, "**Step**: tests", "step", "tests"),
    (T.PROGRESS, "**Status:** 3 of 5 done", "status", "3 of 5 done"),
    (T.FAILED, "Type: tests fail", "failure", FailureType.TESTS_FAIL),
    (T.FAILED, "Failure Type: BUILD-FAIL", "failure", FailureType.BUILD_FAIL),
    (T.FAILED, "Partial Commit: `abc123`", "partial_commit", "abc123"),
    (T.FAILED, "Attempts: 2 of 3", "attempts", 2),
    (T.FAILED, "Recommendations: split it", "recommendation", "split it"),
    (T.HELP_REQUEST, "Type: blocked", "kind", HelpKind.BLOCKED),
    (T.HELP_REQUEST, "Kind: spec unclear", "kind", HelpKind.SPEC_UNCLEAR),
    (T.HELP_REQUEST, "What Was Tried: rebuilt the venv", "tried", "rebuilt the venv"),
    (T.HELP_REQUEST, "Tried: x", "tried", "x"),
    (T.CHECKPOINT, "Next Steps: write docs", "next_steps", "write docs"),
    (T.CHECKPOINT, "Reason: context high", "reason", CheckpointReason.CONTEXT_HIGH),
    (T.DONE, "Tests: PASS", "tests", CheckResult.PASS),
    (T.DONE, "tests: passed (42 tests)", "tests", CheckResult.PASS),
    (T.DONE, "Lint: ok", "lint", CheckResult.PASS),
    (T.DONE, "Build: failed", "build", CheckResult.FAIL),
    (T.DONE, "Commit SHA: abc", "commit", "abc"),
    (T.DONE, "File: a.py", "files", ["a.py"]),
    (T.DONE, "Files Changed: a.py, `b.py`,c.py", "files", ["a.py", "b.py", "c.py"]),
    (T.SPAWN_ACK, "Accepted: no", "accepted", False),
    (T.SPAWN_REQUEST, "Count: 3", "count", 3),
    (T.ACCEPTED, "Started At: 2024-05-06T07:08:09+00:00", "started_at", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
])
def test_field_aliases_and_values(kind: MessageType, line: str, name: str, value: Any) -> None:
    mail = parse(f"[task-1] {kind}\n{line}\nRequest Id: r1\n")
    assert mail.problems == []
    assert mail.fields[name] == value
    assert type(mail.fields[name]) is type(value)


def test_unknown_fields_are_kept() -> None:
    mail = parse("[t1] DONE\nCoverage: 91%\nReviewer Notes: fine", strict=True)
    assert mail.fields == {"coverage": "91%", "reviewer_notes": "fine"}
    assert mail.message is not None and mail.message.body.model_extra == mail.fields


def test_list_fields() -> None:
    text = "[t1] DONE\nFiles:\n- a.py\n* `b.py`\n1. c d.py\n\nCommit: abc\n## Files Changed\n- x.py\n- y.py\n"
    assert parse(text).fields == {"files": ["x.py", "y.py"], "commit": "abc"}
    assert parse(text.split("## ")[0]).fields == {"files": ["a.py", "b.py", "c d.py"], "commit": "abc"}


def test_sections() -> None:
    text = """[t1] CHECKPOINT
Reason: manual

## Done
parser and
  its tests

## What Remains
docs
### Next Steps
- one
- two
"""
    mail = parse(text, strict=True)
    assert mail.fields == {"reason": CheckpointReason.MANUAL, "done": "parser and\n  its tests",
                           "remaining": "docs", "next_steps": "- one\n- two"}


def test_bold_headings() -> None:
    mail = parse("[t1] DONE\n## **Summary:**\nshipped\n## `Files`\n- a.py", strict=True)
    assert mail.fields == {"summary": "shipped", "files": ["a.py"]}


def test_section_lines_are_not_fields() -> None:
    mail = parse("[t1] DONE\n## Summary\nStatus: all green\nTests: FAIL\n## Tests\npass")
    assert mail.fields == {"summary": "Status: all green\nTests: FAIL", "tests": CheckResult.PASS}


@pytest.mark.parametrize(("kind", "name"), [
    (T.STEER, "text"), (T.DONE, "summary"), (T.HELP_REQUEST, "problem"), (T.FAILED, "reason"),
    (T.HELP_RESPONSE, "answer"), (T.ACK, "text"),
])
def test_free_text_goes_to_the_main_field(kind: MessageType, name: str) -> None:
    mail = parse(f"[t1] {kind}\nMessage-Id: 01X\n\nPlease look at\nthe tests first.")
    assert mail.fields[name] == "Please look at\nthe tests first."


def test_free_text_does_not_overwrite_a_given_field() -> None:
    mail = parse("[t1] DONE\nAll good.\n## Summary\nShipped the parser.")
    assert mail.fields == {"summary": "Shipped the parser.", "text": "All good."}


def test_steer_needs_text() -> None:
    assert parse("[t1] STEER\nFocus on the tests.").message is not None
    assert parse("[t1] STEER").message is None
    with pytest.raises(InvalidMessage, match="STEER field Text"):
        parse("[t1] STEER", strict=True)


# -- envelope ---------------------------------------------------------------------------------------------------


def test_envelope_from_headers() -> None:
    text = "[t1] PROGRESS\nFrom: worker-1\nTo: supervisor role:operator\nReply-To: 01ABC\nAck-Required: yes\n"
    msg = parse_markdown(text).message
    assert msg is not None
    assert (msg.sender, msg.to, msg.reply_to, msg.ack_required) == ("worker-1", ["supervisor", "role:operator"],
                                                                     "01ABC", True)


def test_arguments_win_over_headers() -> None:
    mail = parse_markdown("[t1] DONE\nFrom: someone-else\nTo: nobody", sender="worker-1", to=["supervisor"])
    assert mail.message is not None and (mail.message.sender, mail.message.to) == ("worker-1", ["supervisor"])


def test_no_message_without_sender_or_recipients() -> None:
    mail = parse_markdown("[t1] DONE\nCommit: abc", strict=True)
    assert (mail.type, mail.task, mail.fields, mail.message) == (T.DONE, "t1", {"commit": "abc"}, None)
    assert parse_markdown("[t1] DONE\nFrom: w1").message is None


def test_bad_sender() -> None:
    mail = parse("[t1] DONE", sender="Worker One")
    assert mail.message is None and "invalid agent name" in mail.problems[0]
    with pytest.raises(InvalidMessage, match="invalid agent name"):
        parse("[t1] DONE", sender="Worker One", strict=True)


def test_thread_header_and_tasks_of_untasked_types() -> None:
    ack = parse("[t1] ACK\nMessage Id: 01ABC").message
    assert ack is not None and (ack.thread, ack.task, ack.body.message_id) == ("t1", "t1", "01ABC")
    done = parse("DONE\nThread: t2").message
    assert done is not None and (done.thread, done.body.task) == ("t2", "t2")


@pytest.mark.parametrize("subject", ["[../etc] DONE", "[a/b] DONE", "DONE\nTask: ../x", "[t1] DONE\nThread: a b"])
def test_unsafe_task_ids_are_refused(subject: str) -> None:
    mail = parse(subject)
    assert "invalid task id" in mail.problems[0]
    assert mail.task in (None, "t1") and (mail.message is None or mail.message.task == "t1")
    with pytest.raises(InvalidMessage, match="invalid task id"):
        parse(subject, strict=True)


def test_crlf_and_code_fence() -> None:
    mail = parse("\r\n```markdown\r\n[t1] PROGRESS\r\nStep: one\r\n## Summary\r\na\r\nb\r\n```\r\n", strict=True)
    assert (mail.type, mail.fields) == (T.PROGRESS, {"step": "one", "summary": "a\nb"})


# -- lenient and strict -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "problem"), [
    ("[t1] PROGRESS\nContext: lots", "Context: 'lots' is not a number"),
    ("[t1] PROGRESS\nContext: 140%", "Context: '140%' is not valid"),
    ("[t1] PROGRESS\nContext: 45.5.5%", "Context"),
    ("[t1] DONE\nTests: maybe", "Tests: 'maybe' is not one of PASS, FAIL, SKIP"),
    ("[t1] FAILED\nAttempts: several", "Attempts: 'several' is not a whole number"),
    ("[t1] FAILED\nAttempts: 99999999999999999999999", "Attempts"),
    ("[t1] SPAWN_REQUEST\nCount: 100", "Count"),
    ("[t1] SPAWN_ACK\nRequest Id: r1\nAccepted: perhaps", "Accepted: 'perhaps' is not yes or no"),
    ("[t1] ACCEPTED\nStarted At: yesterday", "Started At"),
    ("[t1] PROGRESS\nAck-Required: sometimes", "Ack-Required"),
    ("DONE\nCommit: abc", "DONE needs a task id"),
    ("[t1] ACK", "ACK field Message Id: Field required"),
])
def test_bad_values(text: str, problem: str) -> None:
    mail = parse(text)
    assert mail.problems and mail.problems[0].startswith(problem)
    with pytest.raises(InvalidMessage) as info:
        parse(text, strict=True)
    assert str(info.value).startswith(problem) and "\n" not in str(info.value)


def test_lenient_drops_a_bad_value_and_keeps_the_rest() -> None:
    mail = parse("[t1] PROGRESS\nContext: lots\nStep: tests")
    assert mail.fields == {"step": "tests"}
    assert mail.message is not None and mail.message.body.context_pct is None


# -- round trip ---------------------------------------------------------------------------------------------------

_HEADING = re.compile(r"\s{0,3}#{1,6}(\s.*)?")
task_ids = st.from_regex(TASK_ID_RE, fullmatch=True)
agent_names = st.from_regex(AGENT_NAME_RE, fullmatch=True).filter(lambda n: n not in {".", ".."})
# Text the markdown form carries unchanged: no surrounding blanks, no \r, no line that reads as a heading.
texts = (st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), min_size=1, max_size=30)
         .map(str.strip).filter(lambda s: s and not any(_HEADING.fullmatch(line) for line in s.split("\n"))))
items = st.from_regex(r"[A-Za-z0-9_./ ,-]{0,12}[A-Za-z0-9_./]", fullmatch=True).map(str.strip).filter(bool)


def _values(annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
    """Values of a body field's type that respect its constraints."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = next(a for a in typing.get_args(annotation) if a is not type(None))
        return st.none() | _values(inner, metadata)
    low = next((m.ge for m in metadata if hasattr(m, "ge")), 0)
    high = next((m.le for m in metadata if hasattr(m, "le")), 10**9)
    if typing.get_origin(annotation) is list:
        return st.lists(items, max_size=4)
    if typing.get_origin(annotation) is dict:
        return st.dictionaries(st.sampled_from(["input_tokens", "output_tokens", "cost_usd"]),
                               st.integers(0, 10**9) | st.floats(0, 100), max_size=3)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return st.sampled_from(list(annotation))
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(low, high)
    if annotation is float:
        return st.floats(low, min(high, 100))
    if annotation is datetime:
        return st.datetimes(timezones=st.just(UTC)) | st.datetimes()
    return texts


@st.composite
def messages(draw: st.DrawFn, kind: MessageType) -> Message:
    model = BODY_MODELS[kind]
    body: dict[str, Any] = {"task": draw(task_ids)} if "task" in model.model_fields else {}
    for name, info in model.model_fields.items():
        if name != "task" and (info.is_required() or draw(st.booleans())):
            body[name] = draw(_values(info.annotation, info.metadata))
    if draw(st.booleans()):
        body["note"] = draw(texts)
    return make_message(kind, draw(agent_names), draw(st.lists(agent_names | agent_names.map("role:".__add__),
                                                               min_size=1, max_size=3)),
                        body, thread=draw(st.none() | task_ids), reply_to=draw(st.none() | st.just("01PREV")),
                        ack_required=draw(st.booleans()))


@pytest.mark.parametrize("kind", list(MessageType))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(kind: MessageType, data: st.DataObject) -> None:
    msg = data.draw(messages(kind))
    text = to_markdown(msg)
    mail = parse_markdown(text, strict=True)
    assert (mail.type, mail.task, mail.problems) == (msg.type, msg.task, [])
    back = mail.message
    assert back is not None, text
    assert back.body == msg.body, text
    assert (back.sender, back.to, back.thread, back.reply_to, back.ack_required) == (
        msg.sender, msg.to, msg.thread, msg.reply_to, msg.ack_required)


def test_rendered_form() -> None:
    msg = make_message(T.PROGRESS, "worker-1", "supervisor", {
        "task": "task-42", "step": "writing tests", "context_pct": 45, "files": ["a.py", "b.py"],
        "summary": "two\nlines"})
    assert to_markdown(msg) == (
        "[task-42] PROGRESS\nFrom: worker-1\nTo: supervisor\n\nStep: writing tests\nContext: 45.0%\n"
        "Files: a.py, b.py\n\n## Summary\ntwo\nlines\n")


# -- fuzz --------------------------------------------------------------------------------------------------------

_KEYS = ["Subject", "From", "To", "Task", "Thread", "Reply-To", "Ack-Required", "Type", "Context", "Context Usage",
         "Files", "Tests", "Step", "Status", "Attempts", "Count", "Accepted", "Started At", "Message-Id", "Text",
         "Partial Commit", "What Was Tried", "Next Steps", "Kind", "Reason"]
_WORDS = ["PROGRESS", "DONE", "help request", "FAILED", "ack", "45%", "lots", "-1", "1e400", "nan", "PASS",
          "yes", "maybe", "role:worker", "../x", "a/b", "`x`", "**", "", " ", "9" * 30, "2024-01-01T00:00:00"]
_lines = st.one_of(
    st.text(max_size=40),
    st.builds("[{}] {}".format, st.text(max_size=8) | st.sampled_from(["t1", "../x", ""]),
              st.sampled_from(_WORDS) | st.text(max_size=10)),
    st.builds("{}: {}".format, st.sampled_from(_KEYS) | st.text(max_size=10), st.sampled_from(_WORDS) | st.text()),
    st.builds("{} {}".format, st.sampled_from(["#", "##", "###", "-", "*", "1.", "```", "**"]),
              st.sampled_from(_KEYS + _WORDS) | st.text(max_size=10)),
)
markdownish = st.lists(_lines, max_size=12).flatmap(
    lambda lines: st.sampled_from(["\n", "\r\n", "\r"]).map(lambda sep: sep.join(lines)))
envelopes = st.fixed_dictionaries({}, optional={
    "sender": st.sampled_from(["worker-1", "Bad Name", "", "../x"]),
    "to": st.lists(st.sampled_from(["supervisor", "role:worker", "role:../x", "X"]), max_size=2),
})


def _check(text: str, envelope: dict[str, Any]) -> None:
    mail = parse_markdown(text, **envelope)
    assert mail.type == UNKNOWN or isinstance(mail.type, MessageType)
    assert mail.message is None or (mail.message.type == mail.type and mail.message.task == mail.task)
    try:
        strict = parse_markdown(text, strict=True, **envelope)
    except InvalidMessage as exc:
        assert str(exc) and "\n" not in str(exc)
        assert mail.problems
    else:
        assert strict.problems == [] and strict.fields == mail.fields


@settings(max_examples=300, deadline=None)
@given(text=st.text(), envelope=envelopes)
def test_fuzz_any_text(text: str, envelope: dict[str, Any]) -> None:
    _check(text, envelope)


@settings(max_examples=300, deadline=None)
@given(text=markdownish, envelope=envelopes)
def test_fuzz_markdownish(text: str, envelope: dict[str, Any]) -> None:
    _check(text, envelope)


def test_huge_input_is_fast() -> None:
    text = "[t1] DONE\n" + "Context: " + "9" * 100_000 + "\n" + "# " + " #" * 50_000 + "\n" + "a " * 100_000
    assert parse_markdown(text).type == T.DONE


# -- decorated reports: emoji, heading marks, bullets and bold around subjects and keys -----------------------

DECORATED = [
    # (the mail, its type, its task, fields that must be there)
    ("✅ [api] DONE\nSummary: shipped", T.DONE, "api", {"summary": "shipped"}),
    ("## ✅ [api] DONE\nCommit: abc123", T.DONE, "api", {"commit": "abc123"}),
    ("🚀 [api] PROGRESS\nStep: tests", T.PROGRESS, "api", {"step": "tests"}),
    ("❌ [api] FAILED\nReason: the build broke", T.FAILED, "api", {"reason": "the build broke"}),
    ("# 🆘 [api] HELP_REQUEST\nQuestion: which API?", T.HELP_REQUEST, "api", {"question": "which API?"}),
    ("**✅ [api] DONE**\nCommit: abc", T.DONE, "api", {"commit": "abc"}),
    ("✅ **[api] DONE**\nCommit: abc", T.DONE, "api", {"commit": "abc"}),
    ("⚠️ [api] HELP_REQUEST\nProblem: stuck", T.HELP_REQUEST, "api", {"problem": "stuck"}),
    ("[api] ✅ DONE\nCommit: abc", T.DONE, "api", {"commit": "abc"}),
    ("🏁 api: DONE\nCommit: abc", T.DONE, "api", {"commit": "abc"}),
    ("> ✅ [api] DONE\nCommit: abc", T.DONE, "api", {"commit": "abc"}),
    ("✅ DONE\nTask: api\nCommit: abc", T.DONE, "api", {"commit": "abc"}),
    ("[api] DONE\n- **Tests:** PASS", T.DONE, "api", {"tests": CheckResult.PASS}),
    ("[api] DONE\n* **Summary**: shipped it", T.DONE, "api", {"summary": "shipped it"}),
    ("[api] DONE\n**Files:** a.py, b.py", T.DONE, "api", {"files": ["a.py", "b.py"]}),
    ("[api] DONE\n- Commit: abc123", T.DONE, "api", {"commit": "abc123"}),
    ("[api] DONE\n- **Files**:\n  - a.py\n  - b.py\n- **Tests:** PASS", T.DONE, "api",
     {"files": ["a.py", "b.py"], "tests": CheckResult.PASS}),
    ("[api] PROGRESS\n1. **Step:** tests\n2. **Context:** 45%", T.PROGRESS, "api", {"step": "tests", "context_pct": 45.0}),
    ("[api] DONE\n✅ Tests: PASS\n❌ Lint: FAIL", T.DONE, "api", {"tests": CheckResult.PASS, "lint": CheckResult.FAIL}),
    ("[api] DONE\n- ✅ **Build**: passed", T.DONE, "api", {"build": CheckResult.PASS}),
    ("[api] DONE\n__Commit__: abc", T.DONE, "api", {"commit": "abc"}),
    ("[api] DONE\n*Summary*: done", T.DONE, "api", {"summary": "done"}),
    ("[api] DONE\n+ Lint: ok", T.DONE, "api", {"lint": CheckResult.PASS}),
    ("[api] DONE\n> **Summary:** quoted", T.DONE, "api", {"summary": "quoted"}),
    ("## ✅ [api] DONE\n## 📝 Summary\nall of it\n## 📁 Files Changed\n- a.py", T.DONE, "api",
     {"summary": "all of it", "files": ["a.py"]}),
    ("### 🚧 [api] CHECKPOINT\n- **Done:** parser\n- **Remaining:** docs\n- **Next Steps:** write them", T.CHECKPOINT,
     "api", {"done": "parser", "remaining": "docs", "next_steps": "write them"}),
    ("🤖 [api] PROGRESS\n- **Status**: 3 of 5 done ✅", T.PROGRESS, "api", {"status": "3 of 5 done ✅"}),
]


@pytest.mark.parametrize(("text", "kind", "task", "fields"), DECORATED, ids=[d[0].split("\n")[0] + "|" + d[0].split("\n")[-1] for d in DECORATED])
def test_decorated_reports_are_understood(text: str, kind: MessageType, task: str, fields: dict[str, Any]) -> None:
    mail = parse(text)
    assert (mail.type, mail.task, mail.problems) == (kind, task, [])
    assert {name: mail.fields.get(name) for name in fields} == fields, mail.fields
    assert mail.message is not None


def test_bullets_that_are_prose_stay_prose() -> None:
    mail = parse("[api] DONE\n- fixed the parser\n- Note: it was slow\n\nTests: PASS")
    assert mail.fields == {"summary": "- fixed the parser\n- Note: it was slow", "tests": CheckResult.PASS}

"""The markdown form of Agent Mail: what coding agents write by hand instead of JSON.

    [task-42] PROGRESS        subject: `[task] TYPE`, `task: TYPE` or a bare `TYPE`, optionally after
    From: worker-1            `Subject:` or a `#` heading; optional headers From, To, Thread, Task,
    Step: writing tests       Reply-To, Ack-Required; `Field: value` lines (a list field also takes
    Context: 45%              `- item` lines under an empty `Field:`); `## Field` sections for
    Files: a.py, b.py         multi-line values. Other text before the sections goes to the type's
                              main text field (DONE: summary, STEER: text, ...).
    ## Summary
    free text

Field names are matched case-insensitively, with spaces and dashes read as underscores and with the
aliases agents use (`Context` -> context_pct, `What Was Tried` -> tried). Values are converted to the
type of the body field: `45%` -> 45.0, `pass` -> PASS, `a.py, b.py` -> ["a.py", "b.py"].

Parsing is lenient by default: what cannot be used is described in `ParsedMail.problems` and left out.
With `strict=True` the first problem raises InvalidMessage instead. No other exception escapes.
"""

import json
import re
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from pydantic import ValidationError

from protocol.errors import InvalidMessage, InvalidName
from protocol.messages import (
    ACK_ALWAYS,
    BODY_MODELS,
    Body,
    CheckResult,
    FailureType,
    HelpKind,
    Message,
    MessageType,
    field_adapter,
    make_message,
)
from protocol.names import validate_task_id
from protocol.text import normalize_text

UNKNOWN = "UNKNOWN"
T = MessageType

HEADERS = {
    "from": "sender", "sender": "sender", "to": "to", "thread": "thread", "task": "task",
    "reply_to": "reply_to", "in_reply_to": "reply_to", "ack_required": "ack_required", "subject": "subject",
}
# Candidate body fields per normalized key; the first one the type's model has wins. Plurals and
# singulars (`file` -> files) are tried without being listed.
ALIASES: dict[str, tuple[str, ...]] = {
    "context": ("context_pct",), "context_usage": ("context_pct",), "context_percent": ("context_pct",),
    "type": ("failure", "kind", "reason"), "failure_type": ("failure",), "help_type": ("kind",),
    "what_was_tried": ("tried",), "what_i_tried": ("tried",), "attempted": ("tried",),
    "next": ("next_steps",), "partial": ("partial_commit",),
    "files_changed": ("files",), "changed_files": ("files",), "modified_files": ("files",),
    "test": ("tests",), "test_results": ("tests",), "sha": ("commit",), "commit_sha": ("commit",),
    "current_step": ("step",), "progress": ("status",), "issue": ("problem",), "blocker": ("problem",),
    "completed": ("done",), "what_was_done": ("done",), "todo": ("remaining",), "what_remains": ("remaining",),
    "response": ("answer",), "message": ("text",), "instruction": ("text",), "suggestion": ("recommendation",),
}
# Where free text outside `Field:` lines and sections goes; types not listed keep it as `text`.
PROSE_FIELD = {
    T.TASK_ASSIGN: "description", T.PROGRESS: "status", T.HELP_REQUEST: "problem", T.HELP_RESPONSE: "answer",
    T.OFFERING_READY: "summary", T.DONE: "summary", T.FAILED: "reason", T.SPAWN_REQUEST: "reason",
    T.STEER: "text", T.SHUTDOWN: "reason",
}
# Fields that to_markdown writes as `## Section` even when they fit on one line.
SECTION_FIELDS = frozenset({
    "summary", "problem", "tried", "question", "answer", "done", "remaining", "next_steps", "description",
    "retry_context", "recommendation", "text",
})
TYPE_WORDS: dict[str, MessageType] = {t.value: t for t in MessageType} | {
    "HELP": T.HELP_REQUEST, "COMPLETE": T.DONE, "COMPLETED": T.DONE, "FAIL": T.FAILED, "FAILURE": T.FAILED,
    "ACCEPT": T.ACCEPTED,
}
ENUM_WORDS: dict[type[Enum], dict[str, str]] = {
    CheckResult: {"PASSED": "PASS", "PASSING": "PASS", "OK": "PASS", "GREEN": "PASS", "YES": "PASS",
                  "FAILED": "FAIL", "FAILING": "FAIL", "RED": "FAIL", "NO": "FAIL",
                  "SKIPPED": "SKIP", "N_A": "SKIP", "NA": "SKIP", "NONE": "SKIP"},
    FailureType: {"TESTS_FAILED": "TESTS_FAIL", "TEST_FAIL": "TESTS_FAIL", "TEST_FAILURE": "TESTS_FAIL",
                  "TESTS_FAILING": "TESTS_FAIL", "FAILING_TESTS": "TESTS_FAIL",
                  "BUILD_FAILED": "BUILD_FAIL", "BUILD_ERROR": "BUILD_FAIL", "TIMED_OUT": "TIMEOUT"},
    HelpKind: {"UNCLEAR": "SPEC_UNCLEAR", "QUESTION": "SPEC_UNCLEAR"},
}
BOOL_WORDS = {"yes": True, "y": True, "true": True, "1": True, "on": True, "required": True,
              "no": False, "n": False, "false": False, "0": False, "off": False}

# Every key that names a header or a body field: `status: DONE` is a field, not a subject.
KNOWN_KEYS = frozenset({name for model in BODY_MODELS.values() for name in model.model_fields} | set(HEADERS)
                       | set(ALIASES))

_KEY_LINE = re.compile(
    r"\s{0,3}(?P<mark>\*\*|__|\*|_)?(?P<key>[A-Za-z][\w-]*(?: [\w-]+){0,4}?)(?:\*\*|__|\*|_)?\s*:(?:\*\*|__|\*|_)?"
    r"(?:\s+(?P<value>.*))?"
)
# What agents put before a `Key: value` line: block quote marks, a bullet or number, emoji.
_LINE_DECORATION = re.compile(r"\s*(?:>\s*)*(?:(?:[-*+]|\d{1,3}[.)])\s+)?")
# Unicode categories of decoration around a subject or key: symbols (emoji), their joiners, variation
# selectors and modifiers.
_SYMBOL_CATEGORIES = frozenset({"So", "Sk", "Cf", "Mn", "Me"})
_HEADING = re.compile(r"\s{0,3}#{1,6}(?:\s+(?P<text>.*))?")
_BULLET = re.compile(r"\s*(?:[-*+]|\d{1,3}[.)])\s+(?P<item>.*)")
_BRACKET_SUBJECT = re.compile(r"\[(?P<task>[^\]]*)\]\s*(?P<rest>.*)")
_TASK_SUBJECT = re.compile(r"(?P<task>[^\s:\[\]]+):\s+(?P<rest>.*)")
_CODE = re.compile(r"`(?P<code>[^`\s]+)`")
_NUMBER = re.compile(r"~?\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?)\s*%?(?![\w.])")
_INTEGER = re.compile(r"(?P<num>\d{1,18})(?![\w.])")


@dataclass
class ParsedMail:
    """What a markdown mail said. `message` is set when a valid Message could be built from it."""

    type: MessageType | Literal["UNKNOWN"]
    task: str | None
    fields: dict[str, Any]
    message: Message | None = None
    sender: str | None = None
    to: list[str] = field(default_factory=list)
    subject: str = ""
    problems: list[str] = field(default_factory=list)


class _BadValue(Exception):
    """A field value that cannot be converted; the text says what was expected."""


@dataclass
class _Draft:
    """The mail cut into pieces, before any value is interpreted."""

    subject: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    values: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (label as written, text)
    prose: list[str] = field(default_factory=list)

    def put(self, label: str, text: str) -> None:
        key = norm_key(label)
        if key in HEADERS:
            self.headers[HEADERS[key]] = text
        elif text and key:
            self.values[key] = (label, text)
        elif text:
            self.prose.append(text)


# -- parsing -------------------------------------------------------------------------------------------


def parse_markdown(
    text: str, *, sender: str | None = None, to: list[str] | None = None, strict: bool = False,
) -> ParsedMail:
    """Read a mail in markdown form; `sender` and `to`, when given, win over the From and To headers."""
    draft = _scan(_lines(text))
    problems: list[str] = []
    kind, subject_task = _subject(draft, problems)
    model = BODY_MODELS.get(kind) if kind else None
    fields = _fields(model, draft, problems)
    if draft.prose:
        prose_field = PROSE_FIELD.get(kind, "text") if kind else "text"
        _add_prose(fields, prose_field, "\n".join(draft.prose))
    task = _task_id(subject_task or draft.headers.get("task"), problems)
    thread = _task_id(draft.headers.get("thread"), problems)
    mail = ParsedMail(
        type=kind or UNKNOWN, task=thread or task, fields=fields, sender=sender or draft.headers.get("sender"),
        to=list(to) if to else _names(draft.headers.get("to", "")), subject=draft.subject or "", problems=problems,
    )
    if kind:
        mail.message = _build(mail, kind, task, thread, draft.headers, problems)
    if strict and problems:
        raise InvalidMessage(" ".join(problems[0].split()))
    return mail


def _lines(text: str) -> list[str]:
    """Lines with `\\r\\n` and `\\r` read as `\\n`, without surrounding blank lines or a wrapping code fence."""
    lines = normalize_text(text).split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) >= 2 and lines[0].lstrip().startswith("```") and lines[-1].strip() == "```":
        lines = lines[1:-1]
    return lines


def _scan(lines: list[str]) -> _Draft:
    """Cut lines into subject, headers, `Field: value` lines, free text and `## Field` sections."""
    draft = _Draft()
    section: tuple[str, list[str]] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if heading := _HEADING.fullmatch(line):
            if section is not None:
                draft.put(section[0], "\n".join(section[1]).strip())
            title = (heading["text"] or "").rstrip(" \t#:")
            if draft.subject is None and not draft.values and not draft.prose and _subject_like(title):
                draft.subject, section = title, None
            else:
                section = (title, []) if title else None
            continue
        if section is not None:
            section[1].append(line)
            continue
        key_line = _key_line(line)
        if draft.subject is None and not draft.values and not draft.prose and _is_subject_line(line, key_line):
            draft.subject = _bare(line)
            continue
        if key_line:
            value = _clean_line_value(key_line["value"] or "")
            if not value:
                items = _following_items(lines, i)
                i += len(items)
                value = "\n".join(item.strip() for item in items)
            draft.put(key_line["key"], value)
        elif line.strip():
            draft.prose.append(line.strip())
    if section is not None:
        draft.put(section[0], "\n".join(section[1]).strip())
    return draft


def _key_line(line: str) -> re.Match[str] | None:
    """`Key: value` in a line, also behind decoration (`- **Tests:** PASS`, `✅ Lint: ok`, `> Summary: x`).

    Behind decoration the key must be one we know or be marked bold or italic: a bullet of prose such as
    `- note: it was slow` stays prose."""
    if match := _KEY_LINE.fullmatch(line):
        return match
    rest = _strip_symbols(line[_LINE_DECORATION.match(line).end():], trailing=False)  # type: ignore[union-attr]
    if rest == line.strip() or not (match := _KEY_LINE.fullmatch(rest)):
        return None
    return match if match["mark"] or norm_key(match["key"]) in KNOWN_KEYS else None


def _strip_symbols(text: str, *, trailing: bool = True) -> str:
    """`text` without leading (and, with `trailing`, trailing) blanks and emoji, with their joiners and
    variation selectors."""
    start, end = 0, len(text)
    while start < end and _is_decoration(text[start]):
        start += 1
    while trailing and end > start and _is_decoration(text[end - 1]):
        end -= 1
    return text[start:end]


def _is_decoration(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in _SYMBOL_CATEGORIES


def _bare(text: str) -> str:
    """A subject or heading without its decoration: emoji, bold or italic marks and a block quote or bullet
    before it (`## ✅ **[api] DONE**` -> `[api] DONE`)."""
    previous = None
    while text != previous:
        previous = text
        text = _strip_symbols(text[_LINE_DECORATION.match(text).end():]).strip("*_")  # type: ignore[union-attr]
    return text


def _is_subject_line(line: str, key_line: re.Match[str] | None) -> bool:
    if key_line is None:
        return _subject_like(line)
    key = norm_key(key_line["key"])
    value = key_line["value"] or ""
    return key == "subject" or (key == "type" and _type_word(value, prefix=False) is not None) or (
        key not in KNOWN_KEYS and _subject_like(line)
    )


def _subject_like(text: str) -> bool:
    return _split_subject(text) is not None


def _split_subject(text: str) -> tuple[str | None, MessageType | None] | None:
    """(task, type) of a subject; None when the text is no subject. An unknown type in brackets is kept."""
    text = _bare(text)
    if match := re.match(r"(?i)(subject|type)\s*:", text):
        text = _bare(text[match.end():])
    if bracket := _BRACKET_SUBJECT.fullmatch(text):
        return bracket["task"].strip() or None, _type_word(bracket["rest"], prefix=True)
    if (colon := _TASK_SUBJECT.fullmatch(text)) and norm_key(colon["task"]) not in KNOWN_KEYS:
        if kind := _type_word(colon["rest"], prefix=True):
            return colon["task"], kind
    kind = _type_word(text, prefix=False)
    return (None, kind) if kind else None


def _subject(draft: _Draft, problems: list[str]) -> tuple[MessageType | None, str | None]:
    """(type, task) named by the subject line."""
    if draft.subject is None:
        problems.append("no subject: start the mail with a line like '[task-id] PROGRESS'")
        return None, None
    task, kind = _split_subject(draft.subject) or (None, None)
    if kind is None:
        problems.append(f"unknown message type in subject {_show(draft.subject)}: use one of {', '.join(T)}")
    return kind, task


def _task_id(raw: str | None, problems: list[str]) -> str | None:
    """A task id safe to build paths from, or None (with the problem noted)."""
    try:
        return validate_task_id(raw) if raw else None
    except InvalidName as exc:
        problems.append(str(exc))
        return None


def _following_items(lines: list[str], start: int) -> list[str]:
    items = []
    for line in lines[start:]:
        if not _BULLET.fullmatch(line) or _key_line(line):
            break
        items.append(line)
    return items


# -- field values --------------------------------------------------------------------------------------


def _fields(model: type[Body] | None, draft: _Draft, problems: list[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, (label, text) in draft.values.items():
        name = _resolve(model, key)
        try:
            fields[name] = _convert(model, name, text)
        except _BadValue as exc:
            problems.append(f"{label}: {_show(text)} {exc}")
    return fields


def _add_prose(fields: dict[str, Any], name: str, text: str) -> None:
    """Free text fills the type's main (plain text) field, or `text` when that field was given explicitly."""
    fields["text" if name in fields else name] = text


def _resolve(model: type[Body] | None, key: str) -> str:
    """The body field a normalized key names, through aliases and plurals; the key itself if none."""
    if model is None or key in model.model_fields:
        return key
    for name in (*ALIASES.get(key, ()), key + "s", key.removesuffix("s")):
        if name in model.model_fields and name != "task":
            return name
    return key


def _convert(model: type[Body] | None, name: str, text: str) -> Any:
    """Text -> the body field's type, checked against its constraints; extra fields stay text."""
    if model is None or name not in model.model_fields:
        return text
    base = _base_type(model.model_fields[name].annotation)
    if base is list:
        value: Any = _items(text)
    elif base is bool:
        value = _bool(text)
    elif base is int:
        value = _number(_INTEGER, text, "a whole number")
    elif base is float:
        value = _number(_NUMBER, text, "a number or percentage (e.g. 45%)")
    elif isinstance(base, type) and issubclass(base, Enum):
        value = _enum(base, text)
    elif base is dict:
        try:
            value = json.loads(text)
        except ValueError:
            raise _BadValue("is not a JSON object") from None
    else:
        value = text
    try:
        return field_adapter(model, name).validate_python(value)
    except ValidationError as exc:
        raise _BadValue(f"is not valid: {exc.errors()[0]['msg']}") from None


def _base_type(annotation: Any) -> Any:
    """`X | None` -> X; `list[str]` -> list; `dict[str, float]` -> dict."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    origin = typing.get_origin(annotation)
    return origin if origin in (list, dict) else annotation


def _items(text: str) -> list[str]:
    """`a, b` on one line, or one item a line (bullets allowed)."""
    parts = text.split("\n") if "\n" in text or _BULLET.fullmatch(text) else text.split(",")
    items = []
    for part in parts:
        bullet = _BULLET.fullmatch(part)
        item = _clean_line_value(bullet["item"] if bullet else part)
        if item:
            items.append(item)
    return items


def _bool(text: str) -> bool:
    word = text.strip().lower()
    if word not in BOOL_WORDS:
        raise _BadValue("is not yes or no")
    return BOOL_WORDS[word]


def _number(pattern: re.Pattern[str], text: str, expected: str) -> float | int:
    match = pattern.match(text.strip())
    if not match:
        raise _BadValue(f"is not {expected}")
    return float(match["num"]) if pattern is _NUMBER else int(match["num"])


def _enum(enum: type[Enum], text: str) -> Enum:
    table = {norm_word(m.value): m.value for m in enum} | ENUM_WORDS.get(enum, {})
    found = _lookup(norm_word(text), table, prefix=True)
    if found is None:
        raise _BadValue(f"is not one of {', '.join(m.value for m in enum)}")
    return enum(found)


def _lookup(word: str, table: dict[str, Any], *, prefix: bool) -> Any:
    """The entry for `word`, or with `prefix` for its longest leading words (`PASS_42_TESTS` -> PASS)."""
    if word in table:
        return table[word]
    if prefix:
        keys = [k for k in table if word.startswith(k + "_")]
        if keys:
            return table[max(keys, key=len)]
    return None


def _type_word(text: str, *, prefix: bool) -> MessageType | None:
    return _lookup(norm_word(text), TYPE_WORDS, prefix=prefix)


def _clean_line_value(text: str) -> str:
    """A one-line value without surrounding blanks or a wrapping `code` span."""
    text = text.strip()
    code = _CODE.fullmatch(text)
    return code["code"] if code else text


# -- the message -----------------------------------------------------------------------------------------


def _build(mail: ParsedMail, kind: MessageType, task: str | None, thread: str | None,
           headers: dict[str, str], problems: list[str]) -> Message | None:
    """A validated Message, when the body is complete and the sender and recipients are known."""
    model = BODY_MODELS[kind]
    body = dict(mail.fields)
    if "task" in model.model_fields:
        if task is None and model.model_fields["task"].is_required():
            task = thread
        if task is not None:
            body["task"] = task
    elif thread is None:
        thread = task
    try:
        model.model_validate(body)
    except ValidationError as exc:
        problems.extend(_body_problems(kind, exc))
        return None
    envelope: dict[str, Any] = {"thread": thread}
    if headers.get("reply_to"):
        envelope["reply_to"] = headers["reply_to"]
    if headers.get("ack_required"):
        try:
            envelope["ack_required"] = _bool(headers["ack_required"])
        except _BadValue as exc:
            problems.append(f"Ack-Required: {_show(headers['ack_required'])} {exc}")
    if not (mail.sender and mail.to):
        return None
    try:
        return make_message(kind, mail.sender, mail.to, body, **envelope)
    except InvalidMessage as exc:
        problems.append(str(exc))
        return None


def _body_problems(kind: MessageType, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"])
        if name == "task":
            problems.append(f"{kind} needs a task id: write the subject as '[task-id] {kind}'")
        else:
            problems.append(f"{kind} field {_label(name)}: {err['msg']}")
    return problems


def _names(text: str) -> list[str]:
    """Recipients separated by commas, blanks or lines."""
    return [name for item in _items(text) for name in item.split()]


def _show(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def norm_key(label: str) -> str:
    """`Next Steps`, `next-steps`, `**NEXT_STEPS:**` -> next_steps."""
    return re.sub(r"[\s_-]+", "_", re.sub(r"[*:`]", "", _strip_symbols(label)).lower()).strip("_")


def norm_word(text: str) -> str:
    """`help request`, `Help-Request:` -> HELP_REQUEST (ASCII letters and digits only)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").upper()


# -- rendering -----------------------------------------------------------------------------------------


def to_markdown(message: Message) -> str:
    """The markdown form of `message`; parse_markdown reads back its type, task, envelope and body.

    Text values are written as they are: a value with surrounding blanks, a `\\r`, or a line that reads
    as a `#` heading does not come back unchanged.
    """
    body = message.body
    has_task = "task" in type(body).model_fields
    task = body.task if has_task else message.thread
    lines = [f"[{task}] {message.type.value}" if task else message.type.value,
             f"From: {message.sender}", f"To: {', '.join(message.to)}"]
    if message.thread and has_task:
        lines.append(f"Thread: {message.thread}")
    if message.reply_to:
        lines.append(f"Reply-To: {message.reply_to}")
    if message.ack_required and message.type not in ACK_ALWAYS:
        lines.append("Ack-Required: yes")
    lines.append("")
    sections = []
    for name, value in _body_items(body):
        label = _label(name)
        if isinstance(value, list):
            lines.extend(_list_lines(label, [str(v) for v in value]))
        elif isinstance(value, str) and ("\n" in value or name in SECTION_FIELDS or _clean_line_value(value) != value):
            sections += [f"## {label}", value, ""]
        else:
            lines.append(f"{label}: {_text(name, value)}")
    return "\n".join([*lines, "", *sections]).rstrip("\n") + "\n"


def _body_items(body: Body) -> list[tuple[str, Any]]:
    """Body fields worth writing: not the task, not a default, not empty."""
    items = [(name, getattr(body, name)) for name, info in type(body).model_fields.items()
             if name != "task" and getattr(body, name) != info.default]
    items += list((body.model_extra or {}).items())
    return [(name, value) for name, value in items if value not in (None, "", [])]


def _list_lines(label: str, items: list[str]) -> list[str]:
    """`Label: a, b` when it reads back as the same items, else one `- item` line each."""
    inline = ", ".join(items)
    if _items(inline) == items:
        return [f"{label}: {inline}"]
    return [f"{label}:", *(f"- {item}" for item in items)]


def _label(name: str) -> str:
    return "Context" if name == "context_pct" else name.replace("_", " ").title()


def _text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float):
        return repr(value) + ("%" if name == "context_pct" else "")
    if isinstance(value, (str, int)):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return json.dumps(value, default=str)

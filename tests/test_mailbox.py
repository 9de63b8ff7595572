"""PostOffice and Mailbox in one process: delivery, refusals, quarantine, claims, acks, sequence numbers."""

import os
import stat
from pathlib import Path

import pytest

from agentmail import MailError, MessageTooLarge, PostOffice, UnknownRecipient, UnsafePath
from protocol import InvalidMessage, InvalidName, MessageType, make_message
from protocol.messages import Origin

BAD_NAMES = ["..", "a/b", "", "a" * 65, "Upper"]


def steer(sender: str, to: str | list[str], text: str = "hello"):  # type: ignore[no-untyped-def]
    return make_message(MessageType.STEER, sender, to, {"text": text})


@pytest.fixture
def po(home_dir: Path) -> PostOffice:
    office = PostOffice(home_dir)
    office.register("sup", role="supervisor")
    office.register("w1")
    office.register("w2")
    return office


def test_send_delivers_in_order_with_private_permissions(po: PostOffice) -> None:
    sent = [po.send(steer("sup", "w1", str(i))) for i in range(3)]
    unread = po.mailbox("w1").list()
    assert [d.message.id for d in unread] == [m.id for m in sent]
    assert [d.seq for d in unread] == [1, 2, 3]
    assert [d.name for d in unread] == [f"{i:012d}-{m.id}.json" for i, m in enumerate(sent, 1)]
    box = po.mailbox("w1").path
    for directory in (box, *(box / s for s in ("tmp", "new", "cur", "bad"))):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for file in (box / ".lock", box / ".seq", box / "role", unread[0].path):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_origin_is_stamped_from_the_os_not_the_sender(po: PostOffice) -> None:
    forged = make_message(MessageType.STEER, "sup", "w1", {"text": "x"}, origin={"pid": 1, "uid": 12345})
    sent = po.send(forged)
    assert sent.origin == Origin(pid=os.getpid(), uid=os.getuid(), host=os.uname().nodename)
    assert po.mailbox("w1").list()[0].message.origin == sent.origin


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_agent_names_are_refused_before_any_path_is_built(po: PostOffice, name: str) -> None:
    with pytest.raises(InvalidName, match="invalid agent name"):
        po.mailbox(name)
    with pytest.raises(InvalidName):
        po.register(name)
    with pytest.raises(InvalidMessage, match="invalid agent name"):
        steer("sup", name)
    assert sorted(os.listdir(po.root)) == ["sup", "w1", "w2"]


def test_symlinked_mailbox_or_subdirectory_is_refused(home_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    PostOffice(home_dir).register("w1")
    (home_dir / "mail" / "evil").symlink_to(elsewhere)
    with pytest.raises(UnsafePath, match="symlink"):
        PostOffice(home_dir).mailbox("evil")
    with pytest.raises(UnsafePath):
        PostOffice(home_dir).send(steer("w1", "evil"))
    new = home_dir / "mail" / "w1" / "new"
    new.rmdir()
    new.symlink_to(elsewhere)
    with pytest.raises(UnsafePath, match="symlink"):
        PostOffice(home_dir).send(steer("w1", "w1"))
    assert os.listdir(elsewhere) == []


def test_invalid_body_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="body.text"):
        make_message(MessageType.STEER, "sup", "w1", {})


def test_oversize_message_is_refused_naming_size_and_limit(home_dir: Path) -> None:
    po = PostOffice(home_dir, max_size=1000)
    po.register("w1")
    with pytest.raises(MessageTooLarge, match=r"is \d+ bytes, over the limit of 1000 bytes"):
        po.send(steer("sup", "w1", "x" * 2000))
    assert po.mailbox("w1").list() == []
    assert isinstance(MessageTooLarge("x"), MailError)


def test_strict_home_refuses_unknown_recipients(home_dir: Path) -> None:
    home_dir.mkdir()
    (home_dir / "swarm.toml").write_text("name = 'test'\n")
    po = PostOffice(home_dir)
    assert po.strict
    po.register("w1")
    with pytest.raises(UnknownRecipient, match="unknown recipient 'ghost': known agents are w1; register it first"):
        po.send(steer("w1", ["w1", "ghost"]))
    assert po.mailbox("w1").list() == [], "a refused send must deliver to no one"
    assert not (home_dir / "mail" / "ghost").exists()


def test_bare_home_creates_the_mailbox_on_first_delivery(home_dir: Path) -> None:
    po = PostOffice(home_dir)
    assert not po.strict
    po.send(steer("a", "b"))
    assert po.agents() == ["b"] and len(po.mailbox("b").list()) == 1


def test_broadcast_to_a_role_reaches_every_member_once(po: PostOffice) -> None:
    po.register("w3", role="reviewer")
    sent = po.send(make_message(MessageType.STEER, "sup", ["role:worker", "w1"], {"text": "all hands"}))
    assert po.agents("worker") == ["w1", "w2"]
    for agent in ("w1", "w2"):
        assert [d.message.id for d in po.mailbox(agent).list()] == [sent.id]
    assert po.mailbox("w3").list() == [] and po.mailbox("sup").list() == []
    with pytest.raises(UnknownRecipient, match="no agent has role 'nobody'"):
        po.send(steer("sup", "role:nobody"))


def _plant(po: PostOffice, agent: str, name: str, content: bytes) -> None:
    (po.mailbox(agent).path / "new" / name).write_bytes(content)


def test_malformed_files_are_quarantined_with_a_reason_and_reading_goes_on(po: PostOffice) -> None:
    first = po.send(steer("sup", "w1", "first"))
    good = po.send(steer("sup", "w2", "other")).to_json().encode()
    _plant(po, "w1", "000000000005-BROKEN.json", b'{"not json')
    _plant(po, "w1", "000000000006-WRONGID.json", good)
    _plant(po, "w1", "000000000007-X.json", b'{"type": "STEER", "from": "sup", "to": ["w1"], "id": "X", "body": {}}')
    _plant(po, "w1", "notes.txt", good)
    os.mkfifo(po.mailbox("w1").path / "new" / "000000000008-FIFO.json")
    last = po.send(steer("sup", "w1", "last"))
    assert [d.message.id for d in po.mailbox("w1").list()] == [first.id, last.id]
    reasons = dict(po.mailbox("w1").bad())
    assert sorted(reasons) == ["000000000005-BROKEN.json", "000000000006-WRONGID.json", "000000000007-X.json",
                               "000000000008-FIFO.json", "notes.txt"]
    assert "invalid" in reasons["000000000005-BROKEN.json"].lower()
    assert "does not match the file name" in reasons["000000000006-WRONGID.json"]
    assert "body.text" in reasons["000000000007-X.json"]
    assert "not a regular file" in reasons["000000000008-FIFO.json"]
    assert "is not <12-digit seq>-<id>.json" in reasons["notes.txt"]
    assert all("\n" not in r for r in reasons.values())


def test_claim_moves_to_cur_oldest_first_or_by_id(po: PostOffice) -> None:
    a, b, c = (po.send(steer("sup", "w1", t)) for t in "abc")
    box = po.mailbox("w1")
    claimed = box.claim(c.id)
    assert claimed is not None and claimed.message.id == c.id and claimed.path.parent.name == "cur"
    assert box.claim(c.id) is None
    assert box.claim().message.id == a.id  # type: ignore[union-attr]
    assert box.claim().message.id == b.id  # type: ignore[union-attr]
    assert box.claim() is None and box.list() == []
    again = box.read_claimed(b.id)
    assert again is not None and again.message.id == b.id and again.path.parent.name == "cur"
    assert box.read_claimed("NOSUCHID") is None
    with pytest.raises(InvalidName, match="invalid message id"):
        box.claim("../../etc/passwd")


def test_ack_goes_back_to_the_sender_in_the_same_thread(po: PostOffice) -> None:
    done = po.send(make_message(MessageType.DONE, "w1", "sup", {"task": "t-1"}, thread="t-1", ack_required=True))
    delivered = po.mailbox("sup").claim()
    assert delivered is not None
    ack = po.ack("sup", delivered)
    got = po.mailbox("w1").claim()
    assert got is not None and got.message.id == ack.id
    assert (got.message.type, got.message.body.message_id, got.message.thread, got.message.reply_to) == (
        MessageType.ACK, done.id, "t-1", done.id)
    assert got.message.sender == "sup" and got.message.to == ["w1"]


def test_sequence_survives_restarts_and_a_stale_seq_file(po: PostOffice, home_dir: Path) -> None:
    for _ in range(3):
        po.send(steer("sup", "w1"))
    box = po.mailbox("w1")
    box.claim()
    assert PostOffice(home_dir).send(steer("sup", "w1")) and box.list()[-1].seq == 4
    (box.path / ".seq").write_text("1\n")  # as if the last updates were lost in a power cut
    PostOffice(home_dir).send(steer("sup", "w1"))
    assert [d.seq for d in box.list()] == [2, 3, 4, 5]
    (box.path / ".seq").write_text("garbage")
    PostOffice(home_dir).send(steer("sup", "w1"))
    assert box.list()[-1].seq == 6


def test_agents_and_roles(po: PostOffice, home_dir: Path) -> None:
    (home_dir / "mail" / "Not-An-Agent").mkdir()
    (home_dir / "mail" / "stray-file").write_text("")
    assert po.agents() == ["sup", "w1", "w2"]
    assert po.agents("supervisor") == ["sup"]
    assert po.role_of("w1") == "worker"
    po.register("w1", role="reviewer")  # idempotent, role updated
    assert po.agents("reviewer") == ["w1"]
    assert PostOffice(home_dir / "nowhere").agents() == []

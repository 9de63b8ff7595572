"""The reference of plan keys, check kinds and swarm.toml settings is generated from the models and kept current."""

from pathlib import Path

from conftest import REPO, run_cli
from swarmd.cli.reference import render_reference, undocumented


def test_the_committed_reference_is_current() -> None:
    committed = (REPO / "docs" / "reference.md").read_text()
    assert committed == render_reference(), "regenerate it: swarm reference > docs/reference.md"
    printed = run_cli("swarm", "reference")
    assert printed.returncode == 0 and printed.stdout == committed


def test_every_documented_key_carries_a_description() -> None:
    assert undocumented() == [], "add Field(description=...) to these"


def test_readme_and_example_plan_point_to_the_reference(tmp_path: Path) -> None:
    assert "docs/reference.md" in (REPO / "README.md").read_text()
    example = (REPO / "examples" / "plan.toml").read_text()
    assert "docs/reference.md" in example and "swarmd/" not in example and "protocol/" not in example
    for kind in ("files_exist", "content_check", "command", "tests", "lint"):
        assert f"`{kind}`" in render_reference()

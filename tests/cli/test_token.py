"""`lensloop token create / list / revoke` through the CLI."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from lensloop.catalog.tokens import check_token
from lensloop.cli import app
from lensloop.errors import ConfigError, NotFoundError
from lensloop.project import Project


def test_create_list_revoke(project: Project) -> None:
    runner = CliRunner()
    root = str(project.root)
    empty = runner.invoke(app, ["token", "list", root])
    assert empty.exit_code == 0, empty.output
    assert "no API tokens" in empty.stdout

    created = runner.invoke(app, ["token", "create", root, "--name", "alice-laptop"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("ll_")
    assert "\n" not in token  # stdout holds the token alone, ready for $(...)
    assert "cannot be shown again" in created.stderr
    assert token not in created.stderr
    with project.catalog.transaction() as session:
        assert check_token(session, token) == "alice-laptop"

    twice = runner.invoke(app, ["token", "create", root, "--name", "alice-laptop"])
    assert twice.exit_code == 1
    assert isinstance(twice.exception, ConfigError)
    assert "already exists" in str(twice.exception)

    listed = runner.invoke(app, ["token", "list", root], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if "alice-laptop" in line)
    assert token[3:11] in row
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d", row)) == 2  # created, last used
    assert row.rstrip(" │").endswith("-")  # not revoked
    assert token not in listed.stdout
    for header in ("name", "prefix", "created (UTC)", "last used (UTC)", "revoked (UTC)"):
        assert header in listed.stdout

    revoked = runner.invoke(app, ["token", "revoke", root, "--name", "alice-laptop"])
    assert revoked.exit_code == 0, revoked.output
    assert "revoked at" in revoked.stdout
    with project.catalog.transaction() as session:
        assert check_token(session, token) is None

    unknown = runner.invoke(app, ["token", "revoke", root, "--name", "bob"])
    assert isinstance(unknown.exception, NotFoundError)
    assert "tokens: alice-laptop" in str(unknown.exception)
    missing = runner.invoke(app, ["token", "create", root])
    assert missing.exit_code == 2
    assert "--name" in missing.output

"""`wpotp dev-key`, what `make run` calls: the same development test key on every run, the keys of
older runs revoked, never one more valid key per start."""

from __future__ import annotations

from sqlalchemy import select

from wpotp.extensions import db
from wpotp.models import ApiKey, AuditEntry


def cli(app, *args):
    result = app.test_cli_runner().invoke(args=["wpotp", *args])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()


def dev_key(app, *args) -> tuple[str, str, list[str]]:
    """(key id, secret, the whole output) of one `dev-key` run, as scripts/run.sh reads it."""
    lines = cli(app, "dev-key", "--app", "default", "--name", "make run", *args)
    return lines[-2], lines[-1], lines


def status(client, secret: str) -> int:
    return client.get("/v1/templates", headers={"Authorization": f"Bearer {secret}"}).status_code


def active_dev_keys(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(ApiKey.id).where(ApiKey.name == "make run",
                                                               ApiKey.revoked_at.is_(None))))


def audit_actions(app) -> list[tuple[str, str]]:
    with app.app_context():
        return [(e.action, e.target) for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_every_run_prints_the_same_working_test_key_and_makes_no_other(app, client):
    cli(app, "init")
    first_id, first_secret, lines = dev_key(app)
    assert lines[0].startswith("made a new development test key")
    for _ in range(3):  # three more starts of `make run`
        key_id, secret, lines = dev_key(app)
        assert (key_id, secret) == (first_id, first_secret)
        assert lines[0].startswith("reusing the development test key")

    assert first_secret.startswith("wpotp_test_") and len(first_secret) == len("wpotp_test_") + 40
    assert status(client, first_secret) == 200
    assert active_dev_keys(app) == [first_id]
    with app.app_context():
        key = db.session.get(ApiKey, first_id)
        assert key.mode == "test" and key.prefix == first_secret[:15]
        assert first_secret not in (key.key_hash, key.prefix)
    assert [a for a in audit_actions(app) if a[0].startswith("key.")] == [("key.create", first_id)]


def test_keys_left_by_an_older_make_run_are_revoked(app, client):
    cli(app, "init")
    old = [cli(app, "create-key", "--app", "default", "--mode", "test", "--name", "make run") for _ in range(2)]
    assert all(status(client, lines[-1]) == 200 for lines in old)

    key_id, secret, lines = dev_key(app)

    assert all(status(client, lines_[-1]) == 401 for lines_ in old)
    assert status(client, secret) == 200
    assert active_dev_keys(app) == [key_id]
    assert all(lines_[-2] in lines[0] for lines_ in old)  # the revoked ids are named
    revoked = [target for action, target in audit_actions(app) if action == "key.revoke"]
    assert sorted(revoked) == sorted(lines_[-2] for lines_ in old)


def test_new_revokes_the_current_key_and_makes_another(app, client):
    cli(app, "init")
    old_id, old_secret, _ = dev_key(app)

    key_id, secret, lines = dev_key(app, "--new")

    assert key_id != old_id and secret != old_secret
    assert (status(client, old_secret), status(client, secret)) == (401, 200)
    assert active_dev_keys(app) == [key_id]
    assert dev_key(app)[:2] == (key_id, secret)  # and that one is reused from then on


def test_a_key_revoked_on_the_console_is_replaced_not_revived(app, client):
    cli(app, "init")
    old_id, old_secret, _ = dev_key(app)
    cli(app, "revoke-key", old_id)

    key_id, secret, _ = dev_key(app)

    assert key_id != old_id and secret != old_secret
    assert (status(client, old_secret), status(client, secret)) == (401, 200)


def test_a_key_made_under_another_secret_key_is_revoked_and_replaced(app, make_app):
    cli(app, "init")
    old_id, old_secret, _ = dev_key(app)
    other = make_app(SECRET_KEY="another-instance-secret-" + "x" * 40)  # the same database

    key_id, secret, _ = dev_key(other)

    assert key_id != old_id and secret != old_secret
    assert (status(other.test_client(), old_secret), status(other.test_client(), secret)) == (401, 200)
    assert active_dev_keys(app) == [key_id]


def test_other_keys_are_left_alone(app, client):
    cli(app, "init")
    cli(app, "create-app", "--name", "shop")
    keep = [cli(app, "create-key", "--app", "default", "--mode", "live", "--name", "make run"),
            cli(app, "create-key", "--app", "default", "--mode", "test", "--name", "ci"),
            cli(app, "create-key", "--app", "shop", "--mode", "test", "--name", "make run")]

    dev_key(app)
    dev_key(app, "--new")

    assert [status(client, lines[-1]) for lines in keep] == [200, 200, 200]


def test_dev_key_for_an_unknown_app_fails_and_makes_nothing(app):
    result = app.test_cli_runner().invoke(args=["wpotp", "dev-key", "--app", "nope"])
    assert result.exit_code != 0 and "no app named 'nope'" in result.output
    with app.app_context():
        assert db.session.scalars(select(ApiKey)).first() is None

"""The cipher and its keys: what opens, what refuses, and what each refusal says."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from shared.config import Settings, settings_from_env
from shared.exceptions import ConfigError, SecretDamaged, SecretKeyNotHeld
from shared.secretbox import Keyring, key_label, key_text, new_key, parse_key, sealed_key_label
from shared.secretkeys import KeySource, key_file, parse_keys
from shared.secretrows import PASSPHRASE

SECRET = "correct horse battery staple"
WHERE = "the passphrase of repository r1"


def ring(*keys: bytes, source: str = "BORGFLOW_SECRET_KEY") -> Keyring:
    return Keyring.of(keys, source)


def test_seals_with_the_newest_key_and_opens_with_whichever_it_names() -> None:
    old, new = new_key(), new_key()
    sealed_old = ring(old).seal(SECRET, PASSPHRASE.context("r1"))
    rotating = ring(new, old)
    sealed_new = rotating.seal(SECRET, PASSPHRASE.context("r1"))
    assert sealed_key_label(sealed_old) == key_label(old) and sealed_key_label(sealed_new) == key_label(new)
    assert SECRET.encode() not in sealed_new
    for sealed in (sealed_old, sealed_new):
        assert rotating.open(sealed, PASSPHRASE.context("r1"), WHERE) == SECRET
    # A fresh nonce each time: the same secret never seals the same.
    assert rotating.seal(SECRET, "c") != rotating.seal(SECRET, "c")


def test_a_key_not_held_says_which_key_and_where_to_set_it() -> None:
    mine, other = new_key(), new_key()
    sealed = ring(mine).seal(SECRET, PASSPHRASE.context("r1"))
    with pytest.raises(SecretKeyNotHeld) as e:
        ring(other, source="/var/lib/borgflow/secret-key").open(sealed, PASSPHRASE.context("r1"), WHERE)
    assert str(e.value) == (
        f"the passphrase of repository r1 was encrypted with key {key_label(mine)}, which"
        f" /var/lib/borgflow/secret-key does not hold (it holds {key_label(other)}): set the key it was encrypted with"
    )
    assert SECRET not in str(e.value) and key_text(mine) not in str(e.value)


def test_a_secret_copied_to_another_row_or_altered_does_not_open() -> None:
    keys = ring(new_key())
    sealed = keys.seal(SECRET, PASSPHRASE.context("r1"))
    with pytest.raises(SecretDamaged, match="copied from another row"):
        keys.open(sealed, PASSPHRASE.context("r2"), "the passphrase of repository r2")
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SecretDamaged, match="altered"):
        keys.open(flipped, PASSPHRASE.context("r1"), WHERE)
    with pytest.raises(SecretDamaged, match="not stored in a form"):
        keys.open(SECRET.encode(), PASSPHRASE.context("r1"), WHERE)


def test_keys_read_as_urlsafe_or_standard_base64_and_bad_ones_are_named_not_shown() -> None:
    key = bytes(range(250, 256)) + bytes(26)  # bytes whose base64 has `+` or `/`, and `-` or `_`
    assert parse_key(key_text(key)) == key
    assert parse_key(base64.b64encode(key).decode()) == key
    assert parse_key(key_text(key).rstrip("=")) == key
    assert parse_keys(f" {key_text(key)} , {key_text(bytes(32))}\n", "X") == [key, bytes(32)]
    with pytest.raises(ConfigError, match=r"^BORGFLOW_SECRET_KEY: key 2: 16 bytes where a key has 32"):
        parse_keys(f"{key_text(key)},{key_text(bytes(16))}", "BORGFLOW_SECRET_KEY")
    with pytest.raises(ConfigError) as e:
        parse_keys("not-a-key!!", "BORGFLOW_SECRET_KEY")
    assert "not-a-key" not in str(e.value)
    with pytest.raises(ConfigError, match="holds no key"):
        parse_keys("# only a comment\n", "/x/secret-key")


def test_the_variable_comes_first_else_the_key_file_made_once_with_mode_0600(tmp_path: Path) -> None:
    settings = settings_from_env({"BORGFLOW_DATA_DIR": str(tmp_path)})
    keys = KeySource.of(settings)
    assert keys.where == str(tmp_path / "secret-key") == str(key_file(str(tmp_path)))
    assert keys.ensure() is True
    assert stat.S_IMODE((tmp_path / "secret-key").stat().st_mode) == 0o600
    first = keys.keyring()
    assert KeySource.of(settings).ensure() is False  # kept, never replaced
    assert KeySource.of(settings).keyring() == first

    # Rewritten (as a rotation does): read again by a source that had read it before.
    newer = new_key()
    keys.write([newer, *first.keys])
    assert keys.keyring().keys == (newer, *first.keys)
    assert stat.S_IMODE((tmp_path / "secret-key").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret-key"]  # no temporary file left

    env = KeySource.of(settings_from_env({"BORGFLOW_DATA_DIR": str(tmp_path), "BORGFLOW_SECRET_KEY": key_text(newer)}))
    assert env.where == "BORGFLOW_SECRET_KEY" and env.keyring().keys == (newer,)
    assert env.ensure() is False
    with pytest.raises(ConfigError):
        env.write([new_key()])


def test_no_key_at_all_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"BORGFLOW_SECRET_KEY is not set and .*secret-key does not exist"):
        KeySource.of(Settings(data_dir=str(tmp_path))).keyring()
    with pytest.raises(ConfigError, match="no secret key"):
        KeySource.unset().keyring()
    assert not os.listdir(tmp_path)

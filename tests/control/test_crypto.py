"""The master key and account-key encryption (crypto.py), against real files and the real AES-GCM."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from smolgate.crypto import (
    ENV,
    Keyring,
    MasterKey,
    MasterKeyError,
    blob_key_id,
    key_path,
    load_keyring,
)

SECRET = "sk-live-canary-0123456789abcdef"


def test_round_trip_and_the_blob_names_its_key():
    key, _ = MasterKey.generate()
    blob = key.encrypt(SECRET, "acct_1")
    assert SECRET.encode() not in blob
    assert blob_key_id(blob) == key.id
    assert key.decrypt(blob, "acct_1") == SECRET
    assert key.encrypt(SECRET, "acct_1") != blob  # a fresh nonce each time


def test_tampered_blob_is_refused():
    key, _ = MasterKey.generate()
    blob = bytearray(key.encrypt(SECRET, "acct_1"))
    blob[-5] ^= 1
    with pytest.raises(MasterKeyError, match="does not decrypt"):
        key.decrypt(bytes(blob), "acct_1")


def test_ciphertext_moved_to_another_account_does_not_decrypt():
    key, _ = MasterKey.generate()
    blob = key.encrypt(SECRET, "acct_1")
    with pytest.raises(MasterKeyError, match="another account"):
        key.decrypt(blob, "acct_2")


def test_wrong_master_key_is_a_clear_message_without_the_key():
    right, right_text = MasterKey.generate()
    wrong, wrong_text = MasterKey.generate()
    blob = right.encrypt(SECRET, "acct_1")
    with pytest.raises(MasterKeyError) as err:
        wrong.decrypt(blob, "acct_1")
    msg = str(err.value)
    assert right.id in msg and wrong.id in msg and "encrypted with master key" in msg
    assert right_text not in msg and wrong_text not in msg and SECRET not in msg


def test_keyring_decrypts_with_the_previous_key_and_encrypts_with_the_current():
    old, _ = MasterKey.generate()
    new, _ = MasterKey.generate()
    ring = Keyring(new, [old])
    assert ring.decrypt(old.encrypt(SECRET, "a"), "a") == SECRET
    assert blob_key_id(ring.encrypt(SECRET, "a")) == new.id


def test_key_file_created_private_on_first_run_and_reused(tmp_path):
    home = tmp_path / "home"
    ring = load_keyring(home, env={})
    path = key_path(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert load_keyring(home, env={}).current.id == ring.current.id
    assert len(base64.urlsafe_b64decode(path.read_text().strip())) == 32


def test_key_file_readable_by_others_is_refused(tmp_path):
    load_keyring(tmp_path, env={})
    path = key_path(tmp_path)
    os.chmod(path, 0o644)
    with pytest.raises(MasterKeyError, match=r"refusing to use the master key file .*chmod 600"):
        load_keyring(tmp_path, env={})


def test_key_from_the_environment_wins_and_is_checked(tmp_path):
    key, text = MasterKey.generate()
    assert load_keyring(tmp_path, env={ENV: text}).current.id == key.id
    assert not key_path(tmp_path).exists()  # no file written when the environment gives the key
    short = base64.urlsafe_b64encode(b"x" * 16).decode()
    with pytest.raises(MasterKeyError, match="must be 32 bytes, not 16") as err:
        load_keyring(tmp_path, env={ENV: short})
    assert short not in str(err.value)
    with pytest.raises(MasterKeyError, match="not base64url"):
        load_keyring(tmp_path, env={ENV: "not base64 !!"})


def test_no_key_and_no_creation_says_how_to_get_one(tmp_path):
    with pytest.raises(MasterKeyError, match=ENV):
        load_keyring(tmp_path, env={}, create=False)

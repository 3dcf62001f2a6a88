"""The master key and the encryption of provider API keys at rest (AES-256-GCM, `cryptography`'s AESGCM).

The master key comes from `$SMOLGATE_MASTER_KEY` (base64url of 32 bytes), else from the key file `master.key` in
the data dir, created on first run with mode 0600 in a 0700 directory; a key file that group or others may read
is refused. A blob is `version (1 byte) | key id (8 bytes) | nonce (12 bytes) | ciphertext+tag`: the key id tells
rotation (and a confused operator) which master key encrypted it. The associated data binds a blob to its
account id and header, so a ciphertext copied onto another account's row does not decrypt.

During a rotation (`smolgate secrets rotate-master`, cli_secrets.py) the previous key is kept as
`master.key.old` until every row is re-encrypted; a `Keyring` holds both, so a crash half-way loses nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENV = "SMOLGATE_MASTER_KEY"
KEY_FILE = "master.key"
OLD_SUFFIX = ".old"
VERSION = 1
_ID_LEN, _NONCE_LEN = 8, 12
_HEADER = 1 + _ID_LEN


class MasterKeyError(Exception):
    """The master key is missing, malformed, unsafe, or not the one a secret was encrypted with. The message
    is meant for the operator as is (never a key, never a trace)."""


class MasterKey:
    __slots__ = ("_aead", "id", "source")

    def __init__(self, key: bytes, source: str = "memory") -> None:
        if len(key) != 32:
            raise MasterKeyError(f"the master key from {source} must be 32 bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.id = hashlib.sha256(b"smolgate-master-key-id" + key).digest()[:_ID_LEN].hex()
        self.source = source  # where it came from, for messages ("$SMOLGATE_MASTER_KEY", a path)

    @classmethod
    def generate(cls) -> tuple[MasterKey, str]:
        """A new random key and its base64url text (to write to a file or an environment variable)."""
        text = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        return cls.from_text(text, "a new key"), text

    @classmethod
    def from_text(cls, text: str, source: str) -> MasterKey:
        raw = text.strip()
        try:
            key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            raise MasterKeyError(f"the master key from {source} is not base64url text") from None
        return cls(key, source)

    def __repr__(self) -> str:
        return f"MasterKey(id={self.id}, source={self.source})"

    def encrypt(self, plaintext: str, account_id: str) -> bytes:
        header = bytes([VERSION]) + bytes.fromhex(self.id)
        nonce = secrets.token_bytes(_NONCE_LEN)
        return header + nonce + self._aead.encrypt(nonce, plaintext.encode(), _aad(header, account_id))

    def decrypt(self, blob: bytes, account_id: str) -> str:
        if blob_key_id(blob) != self.id:
            raise MasterKeyError(
                f"the secret of account {account_id} was encrypted with master key {blob_key_id(blob)}, "
                f"but the master key from {self.source} is {self.id}"
            )
        header, nonce, body = (
            blob[:_HEADER],
            blob[_HEADER : _HEADER + _NONCE_LEN],
            blob[_HEADER + _NONCE_LEN :],
        )
        try:
            return self._aead.decrypt(nonce, body, _aad(header, account_id)).decode()
        except InvalidTag:
            raise MasterKeyError(
                f"the secret of account {account_id} does not decrypt: it was altered, or belongs to another "
                "account's row"
            ) from None


def _aad(header: bytes, account_id: str) -> bytes:
    return b"smolgate-account-key\x00" + header + account_id.encode()


def blob_key_id(blob: bytes) -> str:
    """The id of the master key that encrypted `blob` (no key needed)."""
    if len(blob) < _HEADER + _NONCE_LEN + 16 or blob[0] != VERSION:
        raise MasterKeyError("not a smolgate secret (unknown format or version)")
    return blob[1:_HEADER].hex()


class Keyring:
    """The current master key (encrypts) and, during a rotation, the previous one (decrypts only)."""

    def __init__(self, current: MasterKey, previous: Iterable[MasterKey] = ()) -> None:
        self.current = current
        self._by_id = {k.id: k for k in (*previous, current)}

    def encrypt(self, plaintext: str, account_id: str) -> bytes:
        return self.current.encrypt(plaintext, account_id)

    def decrypt(self, blob: bytes, account_id: str) -> str:
        key = self._by_id.get(blob_key_id(blob), self.current)  # an unknown id: the current key explains
        return key.decrypt(blob, account_id)


def key_path(data_path: Path) -> Path:
    return data_path / KEY_FILE


def read_private_file(path: Path, what: str) -> str:
    """A secret file's text; refused (MasterKeyError) when group or others may read or write it."""
    try:
        st = path.stat()
        if st.st_mode & 0o077:
            raise MasterKeyError(
                f"refusing to use the {what} file {path}: its permissions are "
                f"{stat.filemode(st.st_mode)}; other users could read it. Run: chmod 600 {path}"
            )
        return path.read_text()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise MasterKeyError(f"cannot read the {what} file {path}: {exc.strerror}") from None


def read_key_file(path: Path) -> MasterKey:
    """A key file's key; refused (MasterKeyError) when group or others may read or write it."""
    try:
        text = read_private_file(path, "master key")
    except FileNotFoundError as exc:
        raise MasterKeyError(f"cannot read the master key file {path}: {exc.strerror}") from None
    return MasterKey.from_text(text, str(path))


def write_key_file(path: Path, text: str, replace: bool = True) -> None:
    """Write a key file atomically (a temporary file, then rename), mode 0600 from its creation. Without
    `replace`, an existing file wins (FileExistsError): two first runs at once agree on one key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if another process created it first
    finally:
        tmp.unlink(missing_ok=True)


def load_keyring(data_path: Path, env: Mapping[str, str] | None = None, create: bool = True) -> Keyring:
    """The master key from `$SMOLGATE_MASTER_KEY`, else the key file in `data_path` (created on first run when
    `create`), plus the previous one from `master.key.old` (a rotation in progress) or
    `$SMOLGATE_MASTER_KEY_OLD`."""
    env = os.environ if env is None else env
    path = key_path(data_path)
    old_path = path.with_name(KEY_FILE + OLD_SUFFIX)
    previous = [read_key_file(old_path)] if old_path.exists() else []
    if env.get(ENV + "_OLD"):  # a rotation rolling out to replicas configured by environment
        previous.append(MasterKey.from_text(env[ENV + "_OLD"], f"${ENV}_OLD"))
    if env.get(ENV):
        return Keyring(MasterKey.from_text(env[ENV], f"${ENV}"), previous)
    if not path.exists():
        if not create:
            raise MasterKeyError(
                f"no master key: set ${ENV}, or {path} is created on the gateway's first run"
            )
        _, text = MasterKey.generate()
        try:
            write_key_file(path, text, replace=False)
        except FileExistsError:
            pass  # another process made it a moment ago: use theirs
        except OSError as exc:
            raise MasterKeyError(f"cannot create the master key file {path}: {exc.strerror}") from None
    return Keyring(read_key_file(path), previous)

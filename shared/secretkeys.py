"""Where the api's secret keys live: BORGFLOW_SECRET_KEY, else the key file DATA_DIR/secret-key.

Never in the database, so a dump of Postgres holds only ciphertext. Both hold one key or
several, newest first (comma-separated in the variable, one a line in the file): the newest
encrypts, any of them decrypts. The file is read again whenever it changes, so that
`borgflow secrets rotate` can give a running api the new key before it re-encrypts a thing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from shared.config import Settings, default_data_dir
from shared.exceptions import ConfigError
from shared.secretbox import Keyring, key_text, new_key, parse_key

log = logging.getLogger(__name__)

ENV = "BORGFLOW_SECRET_KEY"
FILE_NAME = "secret-key"
_HEADER = (
    "# borgflow's secret keys, newest first: the passphrases stored in borgflow are encrypted with them.\n"
    "# Back this file up apart from the database: without it those passphrases are lost (not the repositories).\n"
)


def key_file(data_dir: str | Path) -> Path:
    return Path(data_dir or default_data_dir()).expanduser() / FILE_NAME


def parse_keys(text: str, where: str) -> list[bytes]:
    """Keys from text (commas or lines; `#` comments), newest first; ConfigError naming `where`."""
    words = [w.strip() for line in text.splitlines() if not line.lstrip().startswith("#") for w in line.split(",")]
    keys = []
    for n, word in enumerate(w for w in words if w):
        try:
            keys.append(parse_key(word))
        except ValueError as e:
            raise ConfigError(f"{where}: key {n + 1}: {e}") from None
    if not keys:
        raise ConfigError(f"{where}: holds no key")
    return keys


def write_key_file(path: Path, keys: Sequence[bytes], *, replace: bool = True) -> bool:
    """Write `keys` to `path`, mode 0600, all at once: a reader sees the old file or the new one.

    With `replace=False` an existing file is kept (returns False): two processes creating the
    key at once end up with the same one.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".secret-key.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_HEADER + "".join(key_text(k) + "\n" for k in keys))
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the file exists, unlike a rename
            except FileExistsError:
                return False
        _fsync_dir(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KeySource:
    """The keys of one process: from the environment (fixed) or from the key file (re-read on change)."""

    def __init__(self, *, env_value: str | None, path: Path | None) -> None:
        self.env_value = env_value or None
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._ring: Keyring | None = None

    @classmethod
    def of(cls, settings: Settings) -> KeySource:
        return cls(env_value=settings.secret_key, path=key_file(settings.data_dir))

    @classmethod
    def unset(cls) -> KeySource:
        """No key at all: every use raises ConfigError (a runtime built without one)."""
        return cls(env_value=None, path=None)

    @property
    def from_env(self) -> bool:
        return self.env_value is not None

    @property
    def where(self) -> str:
        if self.env_value is not None:
            return ENV
        return str(self.path) if self.path is not None else "this process (it has no key)"

    def ensure(self) -> bool:
        """Create the key file with a new key when there is neither the variable nor the file.

        Returns whether it created one. The environment's keys are checked here, at start.
        """
        if self.env_value is not None:
            self.keyring()
            return False
        if self.path is None or self.path.exists():
            return False
        return write_key_file(self.path, [new_key()], replace=False)

    def keyring(self) -> Keyring:
        """The keys now: the file is read again when it changed since the last call."""
        if self.env_value is not None:
            if self._ring is None:
                self._ring = Keyring.of(parse_keys(self.env_value, ENV), ENV)
            return self._ring
        if self.path is None:
            raise ConfigError(f"no secret key: set {ENV} or give the process a data dir")
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise ConfigError(f"no secret key: {ENV} is not set and {self.path} does not exist") from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._ring is None or stamp != self._stamp:
            self._ring = Keyring.of(parse_keys(self.path.read_text(), str(self.path)), str(self.path))
            self._stamp = stamp
        return self._ring

    def write(self, keys: Sequence[bytes]) -> None:
        """Replace the key file's keys (newest first); the environment cannot be written."""
        if self.env_value is not None or self.path is None:
            raise ConfigError(f"the keys come from {ENV}: set it, there is no file to write")
        write_key_file(self.path, keys)


def for_process(settings: Settings) -> KeySource:
    """The keys of the api (or `up`), the key file created if there is neither it nor the variable.

    Says once where the keys are; a bad BORGFLOW_SECRET_KEY or key file raises ConfigError here.
    """
    keys = KeySource.of(settings)
    if keys.ensure():
        log.warning(
            "created the secret key file %s (mode 0600): back it up apart from the database,"
            " the passphrases stored in borgflow cannot be read without it",
            keys.where,
            extra={"action": "secrets.key_created"},
        )
    ring = keys.keyring()
    log.info(
        "secrets at rest: keys from %s, encrypting with %s",
        keys.where,
        ring.newest_label,
        extra={"action": "secrets.keys", "keys": ring.labels},
    )
    return keys

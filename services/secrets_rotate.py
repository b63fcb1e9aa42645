"""`borgflow secrets rotate`: every secret in Postgres re-encrypted under a new key, while it all runs.

With the key file (BORGFLOW_SECRET_KEY unset): a new key goes in front of the old ones in the
file, so every running api (it reads the file again when it changes) opens what is re-encrypted
next; then every secret is re-encrypted, in one transaction; then the file keeps the new key
only. Stopped anywhere, nothing is left that the file cannot open: run it again.

With BORGFLOW_SECRET_KEY this command cannot hand the running apis a key, the operator does:
with one key it prints a new one and the steps; with several (the new one first, as every api
now has them) it re-encrypts every secret under the first and says the others may go.
"""

from __future__ import annotations

from typing import TextIO

from shared import db, secretrows
from shared.config import Settings
from shared.exceptions import BorgflowError, SecretUnreadable
from shared.secretbox import Keyring, key_label, key_text, new_key
from shared.secretkeys import ENV, KeySource


class RotationRefused(BorgflowError):
    """Rotating now would leave a secret unreadable, or another rotation is running."""


async def rotate(settings: Settings, out: TextIO) -> None:
    """Rotate, printing what was done and what is left to do; RotationRefused when it must not."""
    keys = KeySource.of(settings)
    conn = await db.connect(settings.database_url)
    try:
        if not await secretrows.claim_rotation(conn):
            raise RotationRefused("another `borgflow secrets rotate` is running on this database")
        if keys.from_env:
            await _rotate_in_env(conn, keys, out)
        else:
            await _rotate_file(conn, keys, out)
    finally:
        await conn.close()


async def _refuse_unheld(conn: db.Conn, ring: Keyring) -> None:
    unheld = await secretrows.unheld_keys(conn, ring)
    if unheld:
        which = ", ".join(f"{n} under {kid}" for kid, n in unheld.items())
        raise RotationRefused(
            f"secrets are encrypted with keys {ring.source} does not hold ({which}): set those keys"
            " (newest first, the current one first) or set those secrets again; nothing was changed"
        )


async def _reseal(conn: db.Conn, ring: Keyring) -> tuple[int, int]:
    async with conn.transaction():
        await secretrows.lock_for_rotation(conn)
        try:
            return await secretrows.reseal(conn, ring)
        except SecretUnreadable as e:  # a secret changed under a key not held since the check
            raise RotationRefused(f"{e}; nothing was re-encrypted") from None


async def _rotate_file(conn: db.Conn, keys: KeySource, out: TextIO) -> None:
    if keys.path is None or not keys.path.exists():
        raise RotationRefused(
            f"no key file at {keys.path} and {ENV} is not set: nothing to rotate from"
            " (`borgflow up` and `borgflow api` make the file; give --data-dir if it is elsewhere)"
        )
    old = keys.keyring()
    await _refuse_unheld(conn, old)
    new = new_key()
    # New and old together first: a running api opens both while the rows change under it.
    keys.write([new, *old.keys])
    changed, total = await _reseal(conn, keys.keyring())
    keys.write([new])
    print(f"re-encrypted {changed} of {total} secrets under key {key_label(new)}", file=out)
    print(
        f"{keys.path} now holds only that key: back it up again. The old key ({', '.join(old.labels)}) is"
        " needed only to read database backups taken before now.",
        file=out,
    )


async def _rotate_in_env(conn: db.Conn, keys: KeySource, out: TextIO) -> None:
    ring = keys.keyring()
    await _refuse_unheld(conn, ring)
    if len(ring.keys) == 1:
        new = new_key()
        print(f"re-encrypted 0 secrets: the keys come from {ENV}, which only you can change.", file=out)
        print(f"A new key ({key_label(new)}):\n\n    {key_text(new)}\n", file=out)
        print(
            f"1. On every api (and here), set {ENV}=<new key>,<current key> (new first) and restart them:\n"
            "   they encrypt with the new key and still decrypt with the current one.\n"
            f"2. Run `borgflow secrets rotate` again with that {ENV}: it re-encrypts every secret under the new key.\n"
            f"3. Then set {ENV}=<new key> alone everywhere.",
            file=out,
        )
        return
    changed, total = await _reseal(conn, ring)
    print(f"re-encrypted {changed} of {total} secrets under key {ring.newest_label}", file=out)
    print(
        f"Every secret is under the first key of {ENV}: set {ENV} to it alone on every api"
        f" (and keep the others, {', '.join(ring.labels[1:])}, only to read database backups taken before now).",
        file=out,
    )

"""Sortable unique ids: 48 bits of milliseconds, 80 bits of entropy, Crockford base32.

Lexical order equals creation order (to the millisecond, and strictly within one
process), so ids double as a FIFO key and read well in logs and URLs.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_lock = threading.Lock()
_last = (0, 0)


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_id(at: datetime | None = None, seed: str | None = None) -> str:
    """A new 26-character id.

    With `seed`, the entropy is derived from it, so the same (at, seed) always gives
    the same id: the scheduler uses this to make one fire time one job, everywhere.
    """
    global _last
    ms = int((at.timestamp() if at else time.time()) * 1000)
    if seed is not None:
        rand = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=10).digest(), "big")
        return _encode(ms, 10) + _encode(rand, 16)
    with _lock:
        last_ms, last_rand = _last
        if ms <= last_ms:
            # Same (or an earlier, clock stepped back) millisecond: count up so
            # ids stay strictly increasing within this process.
            ms, rand = last_ms, last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last = (ms, rand)
    return _encode(ms, 10) + _encode(rand, 16)


def is_id(value: str) -> bool:
    """Whether `value` looks like an id made by new_id (safe to put in a subject)."""
    return len(value) == 26 and all(c in _ALPHABET for c in value)

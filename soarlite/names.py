"""A run's names: its adapters, and the seed of every position in it.

Seeds come from the run seed and a position (`seed_for(seed, "inner", step)`), never from a shared generator, so a
resumed run draws exactly what an unbroken one would, and any module can draw its own stream without asking the loop.
"""

from __future__ import annotations

import hashlib

TEACHER, STUDENT = "teacher", "student"  # the teacher adapter, and the baseline (promoted) student adapter


def seed_for(*parts) -> int:
    """A stable 31-bit seed from the run seed and a position in the run, so a resumed run draws what it would have."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little") & 0x7FFFFFFF

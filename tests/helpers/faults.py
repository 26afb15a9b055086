"""Helpers of the fault matrix (tests/faults)."""

import hashlib


def digest(path) -> str:
    """The file's bytes, as a SHA-256: what 'unchanged' means for an index or a findings file."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()

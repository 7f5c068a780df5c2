"""A deterministic train / dev / test split of any demo dataset, by a stable hash of each row's id.

    train  60%  curation and training use these rows
    dev    20%  the trainer's dev loss and checkpoint/model selection
    test   20%  the final report only

A row's role depends on its id alone (SHA-256, not Python's salted `hash`), so it is the same on every machine
and run, and adding or removing rows never moves the others between roles.
"""
from __future__ import annotations

import hashlib
from typing import Literal

Role = Literal["train", "dev", "test"]
ROLES: tuple[Role, ...] = ("train", "dev", "test")
# Upper bounds of each role in a 0-99 bucket: 60 / 20 / 20.
BOUNDS = {"train": 60, "dev": 80, "test": 100}


def split_role(row_id: str) -> Role:
    """The role of the row with id `row_id`."""
    bucket = int.from_bytes(hashlib.sha256(f"findap-demo:{row_id}".encode()).digest()[:8], "big") % 100
    return next(role for role in ROLES if bucket < BOUNDS[role])


def demo_split(rows: list[dict], role: Role) -> list[dict]:
    """The rows whose id falls in `role` ("train", "dev" or "test"), in their original order."""
    if role not in ROLES:
        raise ValueError(f"unknown split role {role!r}; use one of {', '.join(ROLES)}")
    return [row for row in rows if split_role(str(row["id"])) == role]

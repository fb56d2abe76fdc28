"""Small, explicit Clever files for tests (the generator makes big realistic ones)."""

from __future__ import annotations

import os

DP_HEADER = "date,sis_id,clever_user_id,clever_school_id,school_name,active,num_logins,num_resources_accessed"
RU_HEADER = "date,sis_id,clever_user_id,clever_school_id,school_name,resource_type,resource_name,resource_id,num_access"


def write(root: str, relative: str, text: str | bytes) -> str:
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    with open(path, "wb") as f:
        f.write(data)
    return path


def dp_rows(day: str, users: list[tuple[str, str]], school: str = "s1") -> str:
    """daily-participation rows for (sis_id, clever_user_id) pairs, alternating active."""
    lines = [DP_HEADER]
    for i, (sis, cid) in enumerate(users):
        active = i % 2 == 0
        lines.append(
            f"{day},{sis},{cid},{school},School {school},{active},{2 if active else 0},{1 if active else 0}"
        )
    return "\n".join(lines) + "\n"


def ru_rows(day: str, users: list[tuple[str, str]], school: str = "s1") -> str:
    lines = [RU_HEADER]
    for sis, cid in users:
        lines.append(f"{day},{sis},{cid},{school},School {school},app,Math Äpp ✓,r1,3")
    return "\n".join(lines) + "\n"

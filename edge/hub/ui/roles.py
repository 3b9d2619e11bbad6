"""The console's roles, each allowed what the one below it is, and more.

viewer: reads persons, groups, faces. operator: also enrols, renames, moves between groups.
admin: also deletes persons and faces, manages the appid's accounts, sees its API credentials.
"""

from __future__ import annotations

ROLES = ("viewer", "operator", "admin")
_RANK = {name: i for i, name in enumerate(ROLES)}


def allows(role: str, needed: str) -> bool:
    """Whether an account of `role` may do what needs `needed` (an unknown role may do nothing)."""
    return role in _RANK and _RANK[role] >= _RANK[needed]

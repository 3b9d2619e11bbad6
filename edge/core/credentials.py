"""A person's access credentials (card numbers) and their wire formats: Wiegand 26-bit H10301,
34-bit, 37-bit H10304 and raw bits, with their parity. Pure; shared by the hub (storage, API),
the sync wire and the door (OSDP card read, Wiegand out). Credentials are secrets of a kind:
never logged, never in events (`Credential.__repr__` hides the number).

To be filled by the OSDP / credentials work (issue 27 items 4-6): `Credential` and
`wiegand_bits(credential) -> list[int]` (first bit sent first, parity included).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Credential:
    fmt: str  # "h10301" (26) | "34bit" | "h10304" (37) | "raw"
    number: int
    facility: int | None = None
    bits: int | None = None  # raw: how many bits `number` carries

    def __repr__(self) -> str:
        return f"Credential(fmt={self.fmt!r}, ...)"

"""A person's access credentials (card numbers) and their wire formats: Wiegand 26-bit H10301,
34-bit, 37-bit H10304 and raw bits, with their parity. Pure; shared by the hub (storage, API),
the sync wire and the door (OSDP card read, Wiegand out). Credentials are secrets of a kind:
never logged, never in events (`Credential.__repr__` and `str()` hide the number).

The formats, first bit sent first (bit 0), E = even parity, O = odd parity:

    h10301  26 bits  E FFFFFFFF CCCCCCCCCCCCCCCC O           E over bits 1-12, O over 13-24
    34bit   34 bits  E FFFFFFFFFFFFFFFF CCCCCCCCCCCCCCCC O   E over bits 1-16, O over 17-32
    h10304  37 bits  E FFFFFFFFFFFFFFFF CCCCCCCCCCCCCCCCCCC O E over bits 1-18, O over 18-35
    raw     `bits` bits of `number`, most significant first, no parity added

(H10304's two parity masks share bit 18, the card number's second bit: that is the format.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class CredentialError(ValueError):
    """A credential that cannot exist (unknown format, number out of range, bad parity); the
    message names the field and the range, never the number itself."""


@dataclass(frozen=True)
class _Layout:
    length: int  # bits on the wire, parity included
    facility_bits: int
    number_bits: int
    even: tuple[int, int]  # data bits [start, end] the leading even parity bit covers
    odd: tuple[int, int]  # data bits [start, end] the trailing odd parity bit covers


LAYOUTS: dict[str, _Layout] = {
    "h10301": _Layout(26, 8, 16, (1, 12), (13, 24)),
    "34bit": _Layout(34, 16, 16, (1, 16), (17, 32)),
    "h10304": _Layout(37, 16, 19, (1, 18), (18, 35)),
}
FORMATS = (*LAYOUTS, "raw")
MAX_CREDENTIALS = 16  # per person: cards, fobs, a phone; more is a data error (API and console alike)
MAX_RAW_BITS = 128  # OSDP carries up to 64 bytes of card data; no panel reads more than this


@dataclass(frozen=True)
class Credential:
    fmt: str  # "h10301" (26) | "34bit" | "h10304" (37) | "raw"
    number: int
    facility: int | None = None
    bits: int | None = None  # raw: how many bits `number` carries

    def __post_init__(self) -> None:
        validate(self)

    def __repr__(self) -> str:
        return f"Credential(fmt={self.fmt!r}, ...)"

    __str__ = __repr__

    @property
    def length(self) -> int:
        """Bits on the wire (parity included)."""
        return LAYOUTS[self.fmt].length if self.fmt in LAYOUTS else int(self.bits or 0)

    def to_json(self) -> dict[str, Any]:
        """The API's and the sync wire's form: {"format", "facility", "number"} ({"format": "raw",
        "bits", "number"} for raw bits)."""
        if self.fmt == "raw":
            return {"format": "raw", "bits": self.bits, "number": self.number}
        return {"format": self.fmt, "facility": self.facility, "number": self.number}

    @classmethod
    def from_json(cls, data: object) -> Credential:
        """The credential `data` stands for, or CredentialError saying what is wrong."""
        if not isinstance(data, dict):
            raise CredentialError("a credential must be an object {format, facility, number}")
        unknown = set(data) - {"format", "facility", "number", "bits"}
        if unknown:
            raise CredentialError(f"unknown credential field(s): {', '.join(sorted(str(k)[:40] for k in unknown))}")
        fmt = data.get("format")
        if not isinstance(fmt, str) or fmt not in FORMATS:
            raise CredentialError(f"format must be one of {', '.join(FORMATS)}")
        number = _integer(data, "number", required=True)
        assert number is not None
        if fmt == "raw":
            if data.get("facility") is not None:
                raise CredentialError("raw bits have no facility (put every bit in number)")
            return cls("raw", number, bits=_integer(data, "bits", required=True))
        if data.get("bits") is not None:
            raise CredentialError(f"{fmt} has a fixed length; bits is for raw only")
        return cls(fmt, number, facility=_integer(data, "facility", required=True))


def _integer(data: dict, name: str, *, required: bool) -> int | None:
    value = data.get(name)
    if value is None:
        if required:
            raise CredentialError(f"{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):  # JSON true is an int to Python
        raise CredentialError(f"{name} must be an integer")
    return value


def validate(cred: Credential) -> None:
    """CredentialError unless `cred` fits its format (ranges per format, raw length)."""
    if cred.fmt not in FORMATS:
        raise CredentialError(f"format must be one of {', '.join(FORMATS)}")
    if not isinstance(cred.number, int) or isinstance(cred.number, bool):
        raise CredentialError("number must be an integer")
    if cred.fmt == "raw":
        if cred.facility is not None:
            raise CredentialError("raw bits have no facility")
        if not isinstance(cred.bits, int) or not 1 <= cred.bits <= MAX_RAW_BITS:
            raise CredentialError(f"raw: bits must be within 1..{MAX_RAW_BITS}")
        if not 0 <= cred.number < 1 << cred.bits:
            raise CredentialError(f"raw: number must fit in {cred.bits} bits")
        return
    layout = LAYOUTS[cred.fmt]
    if cred.bits is not None:
        raise CredentialError(f"{cred.fmt} has a fixed length of {layout.length} bits")
    if not isinstance(cred.facility, int) or isinstance(cred.facility, bool):
        raise CredentialError(f"{cred.fmt}: facility is required")
    if not 0 <= cred.facility < 1 << layout.facility_bits:
        raise CredentialError(f"{cred.fmt}: facility must be within 0..{(1 << layout.facility_bits) - 1}")
    if not 0 <= cred.number < 1 << layout.number_bits:
        raise CredentialError(f"{cred.fmt}: card number must be within 0..{(1 << layout.number_bits) - 1}")


def _bits_of(value: int, width: int) -> list[int]:
    return [(value >> (width - 1 - i)) & 1 for i in range(width)]


def wiegand_bits(cred: Credential) -> list[int]:
    """The bits as they go on the wire, first sent first, parity included."""
    if cred.fmt == "raw":
        assert cred.bits is not None  # validate() made sure
        return _bits_of(cred.number, cred.bits)
    layout = LAYOUTS[cred.fmt]
    assert cred.facility is not None
    bits = [0, *_bits_of(cred.facility, layout.facility_bits), *_bits_of(cred.number, layout.number_bits), 0]
    (e0, e1), (o0, o1) = layout.even, layout.odd
    bits[0] = sum(bits[e0:e1 + 1]) % 2  # even: the covered bits and this one hold an even count of ones
    bits[-1] = 1 - sum(bits[o0:o1 + 1]) % 2  # odd: ... an odd count
    return bits


def pack_bits(bits: list[int]) -> bytes:
    """Bits into bytes, first bit in the first byte's most significant bit, the last byte padded
    with zeros: OSDP's raw card data (osdp_RAW, with the bit count beside it)."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 0x80 >> (i % 8)
    return bytes(out)


def unpack_bits(data: bytes, length: int) -> list[int]:
    """The first `length` bits of `data` (the inverse of pack_bits)."""
    if not 0 <= length <= len(data) * 8:
        raise CredentialError(f"{length} bits do not fit in {len(data)} bytes")
    return [(data[i // 8] >> (7 - i % 8)) & 1 for i in range(length)]


def to_bytes(cred: Credential) -> tuple[bytes, int]:
    """(data, bit count) of an OSDP raw Wiegand card read of `cred`."""
    bits = wiegand_bits(cred)
    return pack_bits(bits), len(bits)


def decode_wiegand(bits: list[int], fmt: str | None = None) -> Credential:
    """The credential a received bit string stands for; CredentialError for a parity error.
    `fmt` None: guessed from the length (26, 34, 37; any other length is raw)."""
    if any(b not in (0, 1) for b in bits):
        raise CredentialError("bits must be 0 or 1")
    if fmt is None:
        fmt = next((name for name, lay in LAYOUTS.items() if lay.length == len(bits)), "raw")
    if fmt == "raw":
        return Credential("raw", int("".join(map(str, bits)) or "0", 2), bits=len(bits))
    layout = LAYOUTS.get(fmt)
    if layout is None:
        raise CredentialError(f"format must be one of {', '.join(FORMATS)}")
    if len(bits) != layout.length:
        raise CredentialError(f"{fmt} has {layout.length} bits, got {len(bits)}")
    (e0, e1), (o0, o1) = layout.even, layout.odd
    if (bits[0] + sum(bits[e0:e1 + 1])) % 2 != 0:
        raise CredentialError(f"{fmt}: even parity error")
    if (bits[-1] + sum(bits[o0:o1 + 1])) % 2 != 1:
        raise CredentialError(f"{fmt}: odd parity error")
    facility = int("".join(map(str, bits[1:1 + layout.facility_bits])), 2)
    number = int("".join(map(str, bits[1 + layout.facility_bits:-1])), 2)
    return Credential(fmt, number, facility=facility)

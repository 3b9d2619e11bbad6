"""Credential formats against published bit strings, parity checked by the decoder, and the
number never shown by repr/str."""

from __future__ import annotations

import pytest

from edge.core.credentials import (
    Credential,
    CredentialError,
    decode_wiegand,
    pack_bits,
    to_bytes,
    unpack_bits,
    wiegand_bits,
)


def bits(text: str) -> list[int]:
    return [int(c) for c in text.replace(" ", "")]


# (credential, bit string): where each expected string comes from.
VECTORS = [
    # H10301 facility 99 card 999: "00110001100000011111001111" (hex 0C607CF), the README example
    # of the angorb/wiegand-26bit-calculator-php repository (a published 26-bit calculator).
    (Credential("h10301", 999, facility=99), "0 01100011 0000001111100111 1"),
    # H10301 facility 212 card 7041 (data D4 1B 81): "1 11010100 00011011 10000001 0", the
    # Wiegand26 example of the Civintec CN56 reader's user manual (section 6.4.2).
    (Credential("h10301", 7041, facility=212), "1 11010100 00011011 10000001 0"),
    # H10301 facility 42 card 12345: hand-derived (no published string found). 42 = 00101010,
    # 12345 = 0011000000111001; first 12 data bits 001010100011 hold five ones -> even parity 1;
    # last 12 data bits 000000111001 hold four ones -> odd parity 1.
    (Credential("h10301", 12345, facility=42), "1 00101010 0011000000111001 1"),
    # 34-bit, data 89 D4 1B 81: "1 10001001 11010100 00011011 10000001 1", the Wiegand34
    # example of the same Civintec manual (section 6.4.5): facility 0x89D4, card 0x1B81.
    (Credential("34bit", 0x1B81, facility=0x89D4), "1 1000100111010100 0001101110000001 1"),
    # 34-bit, card 1234567890 = 0x499602D2: "1 0100 1001 1001 0110 0000 0010 1101 0010 0", the
    # example of Hikvision's Wiegand camera operation manual: facility 0x4996, card 0x02D2.
    (Credential("34bit", 0x02D2, facility=0x4996), "1 0100100110010110 0000001011010010 0"),
    # H10304 facility 42 card 12345: hand-derived from the layout proxmark3's Pack_H10304
    # (client/src/wiegand_formats.c) and the ooaccess "37 bit FC" page give: 16 facility bits
    # at 1-16, 19 card bits at 17-35, even parity over 1-18 at 0, odd parity over 18-35 at 36.
    # 42 = 0000000000101010, 12345 = 0000011000000111001. Bits 1-18: facility (three ones) and
    # the card's first two bits 00 -> three ones -> even parity 1. Bits 18-35: the card's last
    # 18 bits 000011000000111001 -> six ones -> odd parity 1.
    (Credential("h10304", 12345, facility=42), "1 0000000000101010 0000011000000111001 1"),
    # H10304 facility 65535 card 524287 (all data ones): bits 1-18 eighteen ones -> even 0;
    # bits 18-35 eighteen ones -> odd 1. Hand-derived.
    (Credential("h10304", 524287, facility=65535), "0 1111111111111111 1111111111111111111 1"),
    # Raw bits: the number's bits, most significant first, nothing added.
    (Credential("raw", 0b1011, bits=6), "001011"),
]


@pytest.mark.parametrize("cred, expected", VECTORS)
def test_wiegand_bits_match_published_and_derived_strings(cred: Credential, expected: str) -> None:
    assert wiegand_bits(cred) == bits(expected)
    assert decode_wiegand(bits(expected), cred.fmt) == cred


@pytest.mark.parametrize("cred, expected", VECTORS[:-1])
def test_decoder_detects_every_single_bit_error(cred: Credential, expected: str) -> None:
    """Flipping any one bit breaks a parity (every data bit is under one of them)."""
    good = bits(expected)
    for i in range(len(good)):
        bad = list(good)
        bad[i] ^= 1
        with pytest.raises(CredentialError, match="parity"):
            decode_wiegand(bad, cred.fmt)


def test_length_picks_the_format() -> None:
    assert decode_wiegand(bits("1 00101010 0011000000111001 1")) == Credential("h10301", 12345, facility=42)
    assert decode_wiegand([1, 0, 1]) == Credential("raw", 5, bits=3)


def test_osdp_bytes_are_msb_first_with_the_bit_count() -> None:
    data, count = to_bytes(Credential("h10301", 12345, facility=42))
    # 1 00101010 0011000000111001 1 -> 10010101 00011000 00011100 11(000000)
    assert (data, count) == (bytes([0x95, 0x18, 0x1C, 0xC0]), 26)
    assert unpack_bits(data, count) == wiegand_bits(Credential("h10301", 12345, facility=42))
    assert pack_bits([1] * 8 + [1]) == b"\xff\x80"


@pytest.mark.parametrize("fmt, facility, number, message", [
    ("h10301", 256, 1, "facility must be within 0..255"),
    ("h10301", 1, 65536, "card number must be within 0..65535"),
    ("h10301", -1, 1, "facility"),
    ("34bit", 65536, 1, "facility must be within 0..65535"),
    ("34bit", 1, 65536, "card number must be within 0..65535"),
    ("h10304", 65536, 1, "facility must be within 0..65535"),
    ("h10304", 1, 524288, "card number must be within 0..524287"),
    ("h10304", None, 1, "facility is required"),
    ("wiegand99", 1, 1, "format must be one of"),
])
def test_out_of_range_is_refused_with_the_range(fmt, facility, number, message) -> None:
    with pytest.raises(CredentialError, match=message) as info:
        Credential(fmt, number, facility=facility)
    assert str(number) not in str(info.value) or number == 1


def test_raw_validation() -> None:
    with pytest.raises(CredentialError, match="fit in 4 bits"):
        Credential("raw", 16, bits=4)
    with pytest.raises(CredentialError, match="bits must be within"):
        Credential("raw", 0, bits=0)
    with pytest.raises(CredentialError, match="no facility"):
        Credential("raw", 1, facility=1, bits=4)


def test_json_round_trip_and_hostile_input() -> None:
    for cred, _ in VECTORS:
        assert Credential.from_json(cred.to_json()) == cred
    for data, message in [
        ([], "must be an object"),
        ({"format": "h10301", "facility": 1}, "number is required"),
        ({"format": "h10301", "facility": True, "number": 1}, "facility must be an integer"),
        ({"format": "h10301", "facility": "1", "number": 1}, "facility must be an integer"),
        ({"format": "h10301", "facility": 1, "number": 1.5}, "number must be an integer"),
        ({"format": "h10301", "facility": 1, "number": 1, "pin": 1}, "unknown credential field"),
        ({"format": "h10301", "facility": 1, "number": 1, "bits": 26}, "bits is for raw only"),
        ({"format": "raw", "number": 1}, "bits is required"),
        ({"format": None, "number": 1}, "format must be one of"),
    ]:
        with pytest.raises(CredentialError, match=message):
            Credential.from_json(data)


def test_repr_and_str_never_show_the_number() -> None:
    cred = Credential("h10304", 424242, facility=31337)
    for text in (repr(cred), str(cred), f"{cred}", repr([cred]), repr((cred,))):
        assert "424242" not in text and "31337" not in text

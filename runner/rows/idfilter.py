"""The ids a destination holds, in fixed memory: a Bloom filter that tells a surely new id from one
that may have been seen. Holds hashes, never the ids themselves; reads and writes nothing."""

from __future__ import annotations


class IdFilter:
    """A Bloom filter over ids: "surely new" when any of its bits is clear, "maybe seen" otherwise.
    Lets collect append new answers without reading the destination again; only possible
    conflicts (about 1 in 10,000 at a million ids) are merged the slow way."""

    def __init__(self, bits: int = 1 << 26) -> None:  # 8 MB
        self.bits = bits
        self._map = bytearray(bits // 8)

    def _positions(self, custom_id: str) -> tuple[int, int, int]:
        h = hash(custom_id) & 0xFFFFFFFFFFFFFFFF
        return h % self.bits, (h >> 21) % self.bits, ((h * 0x9E3779B97F4A7C15) >> 40) % self.bits

    def check_and_add(self, custom_id: str) -> bool:
        """True when the id may have been added before."""
        seen = True
        for position in self._positions(custom_id):
            byte, bit = divmod(position, 8)
            if not self._map[byte] & (1 << bit):
                seen = False
                self._map[byte] |= 1 << bit
        return seen

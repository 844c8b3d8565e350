"""Tiny IPv4/IPv6 packet builders for tests (UDP payloads, no checksums needed by the core)."""

from __future__ import annotations

import ipaddress


def ip4(src: str, dst: str, payload: bytes = b"x" * 20, proto: int = 17) -> bytes:
    total = 20 + len(payload)
    header = bytes([0x45, 0, total >> 8, total & 0xFF, 0, 0, 0, 0, 64, proto, 0, 0])
    return header + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + payload


def ip6(src: str, dst: str, payload: bytes = b"y" * 20, proto: int = 17) -> bytes:
    n = len(payload)
    header = bytes([0x60, 0, 0, 0, n >> 8, n & 0xFF, proto, 64])
    return header + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + payload


def ip(src: str, dst: str, payload: bytes = b"z" * 20) -> bytes:
    return ip6(src, dst, payload) if ":" in src else ip4(src, dst, payload)

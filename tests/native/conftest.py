"""The native tests' fixtures.

- ``plane``: a `NativePlane` whose loops are never started (a pipe stands in for
  the TUN fd), for tests of what Python mirrors into it; stopped afterwards.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pywg._fast.plane import NativePlane


@pytest.fixture
def plane() -> Iterator[NativePlane]:
    from pywg._fast.plane import NativePlane  # only where the extension is built

    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    r, w = os.pipe()  # stands in for the TUN fd; the loops are never started here
    os.close(w)
    mirror = NativePlane(r, udp, 1420, lambda reason: None)
    try:
        yield mirror
    finally:
        mirror.stop()
        udp.close()
        os.close(r)

"""With the pure-Python replay window, linking a Session to the native plane loses it.

NativePlane._link (src/pywg/_fast/plane.py) copies the replay window into C
only when it is a NativeReplayWindow (it reads its `_state`); with
PYWG_BACKEND=pure the Session holds a PureReplayWindow, pywg_kp_new gets
NULL and starts with an empty window, so every counter accepted before the
link is accepted once more. Reached when a NativePlane is used while
PYWG_BACKEND=pure (e.g. pywg.asyncio.Tunnel(native=True)); the daemon's
default (native=None) follows the backend and does not.

Run: PYWG_BACKEND=pure python3 fuzz/repro/plane_link_drops_pure_window.py
(prints REPRODUCED, exits 1; exits 0 once fixed).
"""

from __future__ import annotations

import os
import socket
import sys

from pywg._fast.plane import NativePlane
from pywg.device import Device
from pywg.keys import PrivateKey
from pywg.session import Session

k1, k2 = os.urandom(32), os.urandom(32)
a = Session(k1, k2, 1, 2, is_initiator=True, created=0.0)
b = Session(k2, k1, 2, 1, is_initiator=False, created=0.0)
m0 = a.seal(bytes(16))
assert b.open(0, m0[16:]) is not None
print(f"window before the link: {type(b.replay).__name__}")
udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
r, w = os.pipe()
plane = NativePlane(r, udp, 1420, lambda reason: None)
device = Device(PrivateKey.generate())
peer = device.add_peer(PrivateKey.generate().public_key, ["198.19.0.2/32"])
peer.current = b
plane.sync(device)
replayed = b.open(0, m0[16:]) is not None
plane.stop()
udp.close()
os.close(r)
os.close(w)
print("REPRODUCED: counter 0 accepted twice" if replayed else "fixed: the replay was refused")
sys.exit(1 if replayed else 0)

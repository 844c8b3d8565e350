"""A replayed cookie reply must not be accepted again nor renew the initiator's cookie.

After consuming a cookie reply the Linux kernel forgets the mac1 it was for
(cookie.c, wg_cookie_message_consume: have_sent_mac1 = false), so the same
reply cannot be used twice; pywg's CookieGenerator.consume_reply does the
same (it clears _last_mac1). Were the mac1 kept, an on-path attacker who
captured one cookie reply could re-send it at will, and each copy would
restart the cookie's 115 s validity (cookie_time), so the initiator would
keep sending mac2 with a cookie the responder's secret (rotated every 120 s)
no longer backs. wireguard-go keeps the mac1 and accepts such a replay.

Run: python3 fuzz/repro/cookie_reply_replay.py  (prints "fixed" and exits 0
while the replay is refused; REPRODUCED and exit 1 if it renews the cookie)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fuzz_device import B_ADDR, Lab

lab = Lab(seed=1)
reply = next(d for d in lab.recorded if d[0] == 3)  # consumed once while the lab was built
assert lab.b.public_key is not None
cookies = lab.a.peer(lab.b.public_key).cookies
before = cookies._cookie_time
lab.a.receive_datagram(reply, B_ADDR, lab.now + 100.0)  # the same reply, 100 s later
after = cookies._cookie_time
print(f"cookie time before replay {before:.3f}, after {after:.3f}")
print("REPRODUCED: the replay renewed the cookie" if after != before else "fixed")
sys.exit(1 if after != before else 0)

"""Home relay associations and direct-path probes: STUN Binding transactions with pywg
attributes.

Everything a mesh node sends on its WireGuard port that is not WireGuard is a
STUN Binding request (RFC 8489 §6), so one rule (`pywg.stun.is_stun`, also in
the C plane) tells it apart, and the answer is always a Binding success
response whose XOR-MAPPED-ADDRESS tells the sender how it was seen.

Attributes from the comprehension-optional range (§18.3.1: a STUN server
that does not know them ignores them):

- PYWG-KEY (0xC0A1, 32 bytes): a WireGuard public key. In a *probe* it names
  the node the request is meant for; in its answer the node that answered.
  In an *association* it names the node associating.
- PYWG-TIME (0xC0A2, 8 bytes): milliseconds since the Unix epoch, big-endian;
  a relay takes an association only if it is fresh and newer than the last one.
- PYWG-PADDING (0xC0A4): zeros that make a probe as long as its answer, so
  a node never sends more than it was sent.
- PYWG-SIGNATURE (0xC0A3, 64 bytes): Ed25519 (RFC 8032) over
  ASSOCIATE_CONTEXT, the relay's Ed25519 key, the transaction ID, the key
  and the time, made with the node's control key (`pywg.mesh.auth`), whose
  public half the coordinator holds: an association is good for one relay.
- PYWG-NODE-ID (0xC0A5, 4 bytes, big-endian): in the relay's answer to an
  association, the node's id on the relays.

An *association* goes to a home relay's UDP port (`pywg.mesh.relayserver`,
docs/relay.md) and tells it "datagrams for my node id go to where this came
from"; a *probe* goes to a peer's candidate endpoint and asks "is this path
to you open?".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .. import stun
from ..constants import KEY_SIZE  # X25519 and Ed25519 public keys alike

ATTR_KEY: Final = 0xC0A1
ATTR_TIME: Final = 0xC0A2
ATTR_SIGNATURE: Final = 0xC0A3
ATTR_PADDING: Final = 0xC0A4
ATTR_NODE_ID: Final = 0xC0A5
PROBE_PADDING: Final = 24  # a probe is as long as its answer over IPv6 (no amplification)
ASSOCIATE_CONTEXT: Final = b"pywg relay associate v1\0"
SIGNATURE_SIZE: Final = 64


def _signed_attributes(message: stun.StunMessage) -> tuple[bytes, int, bytes] | None:
    """(key, time, signature) of a signed Binding request, or None if it is not one."""
    attrs = message.attributes
    if message.kind != stun.BINDING_REQUEST:
        return None
    key, when, signature = attrs.get(ATTR_KEY), attrs.get(ATTR_TIME), attrs.get(ATTR_SIGNATURE)
    if key is None or when is None or signature is None:
        return None
    if len(key) != KEY_SIZE or len(when) != 8 or len(signature) != SIGNATURE_SIZE:
        return None
    return key, struct.unpack("!Q", when)[0], signature


def _associate_part(relay_key: bytes, transaction_id: bytes, key: bytes, time_ms: int) -> bytes:
    return ASSOCIATE_CONTEXT + relay_key + transaction_id + key + struct.pack("!Q", time_ms)


def association_request(
    transaction_id: bytes, node_key: bytes, control: SigningKey, relay_key: bytes, time_ms: int
) -> bytes:
    """An association with the relay whose Ed25519 key is `relay_key` (docs/relay.md)."""
    if len(node_key) != KEY_SIZE or len(relay_key) != KEY_SIZE:
        raise ValueError("WireGuard and relay keys are 32 bytes")
    signed = _associate_part(relay_key, transaction_id, node_key, time_ms)
    return stun.binding_request(
        transaction_id,
        [
            (ATTR_KEY, node_key),
            (ATTR_TIME, struct.pack("!Q", time_ms)),
            (ATTR_SIGNATURE, control.sign(signed).signature),
        ],
    )


@dataclass(frozen=True, slots=True)
class Association:
    transaction_id: bytes
    node_key: bytes
    time_ms: int
    signature: bytes

    def verify(self, relay_key: bytes, control_key: bytes) -> bool:
        """Whether the node (`control_key`: its Ed25519 public key) signed this for the relay."""
        signed = _associate_part(relay_key, self.transaction_id, self.node_key, self.time_ms)
        try:
            VerifyKey(control_key).verify(signed, self.signature)
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True


def parse_association(message: stun.StunMessage) -> Association | None:
    """The association in a Binding request, or None if it is not one (a plain STUN request)."""
    signed = _signed_attributes(message)
    return None if signed is None else Association(message.transaction_id, *signed)


def association_answer(transaction_id: bytes, source: stun.Address, node_id: int) -> bytes:
    """The relay's answer to an association it took: the source it saw, the node's id."""
    return stun.binding_success(
        transaction_id, source, [(ATTR_NODE_ID, struct.pack("!I", node_id))]
    )


def answered_node_id(response: stun.BindingResponse) -> int | None:
    """The node id in a relay's answer to an association (None if it carries none)."""
    value = response.attributes.get(ATTR_NODE_ID)
    return struct.unpack("!I", value)[0] if value is not None and len(value) == 4 else None


def probe_request(transaction_id: bytes, target_key: bytes) -> bytes:
    """A probe for the node whose WireGuard public key is `target_key`, padded to the
    size of its answer (an IPv6 XOR-MAPPED-ADDRESS), so answering amplifies nothing."""
    padding = (ATTR_PADDING, bytes(PROBE_PADDING))
    return stun.binding_request(transaction_id, [(ATTR_KEY, target_key), padding])


def probe_target(message: stun.StunMessage) -> bytes | None:
    """The key a probe is meant for (None: not a probe)."""
    if message.kind != stun.BINDING_REQUEST or ATTR_SIGNATURE in message.attributes:
        return None
    key = message.attributes.get(ATTR_KEY)
    return key if key is not None and len(key) == KEY_SIZE else None


def probe_answer(request: stun.StunMessage, source: stun.Address, own_key: bytes) -> bytes | None:
    """The answer to a probe: where it came from, and who answers; None if it would be
    longer than the probe (no amplification towards a spoofed source)."""
    answer = stun.binding_success(request.transaction_id, source, [(ATTR_KEY, own_key)])
    return answer if len(answer) <= request.size else None


def answered_by(response: stun.BindingResponse) -> bytes | None:
    """The key in a probe's answer (None if it carries none)."""
    key = response.attributes.get(ATTR_KEY)
    return key if key is not None and len(key) == KEY_SIZE else None

"""Protocol constants (whitepaper §5.4, §6; Linux/wireguard-go values where noted).

This is the one definition of every number the Python core and the native
plane (``pywg._fast``) share: ``pywg/_fast/build_fast.py`` turns each int and
float below into ``#define PYWG_<NAME>`` of the generated C header
``_fast/wg_constants.h`` at build time. It loads this file by path, so this
module imports only the standard library.
"""

from __future__ import annotations

from typing import Final

# whitepaper §5.4: the Noise construction and WireGuard identifier (no NUL bytes hashed)
CONSTRUCTION: Final = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER: Final = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1: Final = b"mac1----"
LABEL_COOKIE: Final = b"cookie--"

# whitepaper §5.4.2-5.4.6: message types and sizes
MESSAGE_INITIATION: Final = 1
MESSAGE_RESPONSE: Final = 2
MESSAGE_COOKIE_REPLY: Final = 3
MESSAGE_TRANSPORT: Final = 4

INITIATION_SIZE: Final = 148
RESPONSE_SIZE: Final = 92
COOKIE_REPLY_SIZE: Final = 64
TRANSPORT_HEADER_SIZE: Final = 16
AEAD_TAG_SIZE: Final = 16
TRANSPORT_MIN_SIZE: Final = TRANSPORT_HEADER_SIZE + AEAD_TAG_SIZE  # 32 = keepalive
KEEPALIVE_SIZE: Final = TRANSPORT_MIN_SIZE
PADDING_MULTIPLE: Final = 16  # whitepaper §5.4.6

KEY_SIZE: Final = 32
MAC_SIZE: Final = 16
TIMESTAMP_SIZE: Final = 12
COOKIE_SIZE: Final = 16
COOKIE_NONCE_SIZE: Final = 24
COOKIE_SECRET_SIZE: Final = 32  # Rm, random (whitepaper §5.4.7)

# whitepaper §5.4.2-5.4.7: field offsets. Every message starts with a 4-byte
# word: the type byte, then three reserved zero bytes. Little-endian integers.
MESSAGE_TYPE_SIZE: Final = 4
INDEX_SIZE: Final = 4
# messages 1 and 2: type ‖ sender ‖ ...; message 2: type ‖ sender ‖ receiver ‖ ...
SENDER_INDEX_OFFSET: Final = MESSAGE_TYPE_SIZE  # 4
RESPONSE_RECEIVER_INDEX_OFFSET: Final = SENDER_INDEX_OFFSET + INDEX_SIZE  # 8
# messages 3 and 4: type ‖ receiver ‖ ...
RECEIVER_INDEX_OFFSET: Final = MESSAGE_TYPE_SIZE  # 4
# §5.4.4: mac1 and mac2 close messages 1 and 2; mac1 covers everything before
# it, mac2 everything before mac2.
INITIATION_MAC1_OFFSET: Final = INITIATION_SIZE - 2 * MAC_SIZE  # 116
INITIATION_MAC2_OFFSET: Final = INITIATION_SIZE - MAC_SIZE  # 132
RESPONSE_MAC1_OFFSET: Final = RESPONSE_SIZE - 2 * MAC_SIZE  # 60
RESPONSE_MAC2_OFFSET: Final = RESPONSE_SIZE - MAC_SIZE  # 76
# §5.4.7: type ‖ receiver ‖ nonce (24) ‖ encrypted cookie (16 + 16)
COOKIE_REPLY_NONCE_OFFSET: Final = RECEIVER_INDEX_OFFSET + INDEX_SIZE  # 8
COOKIE_REPLY_COOKIE_OFFSET: Final = COOKIE_REPLY_NONCE_OFFSET + COOKIE_NONCE_SIZE  # 32
# §5.4.6: type ‖ receiver ‖ counter (8) ‖ encrypted packet
TRANSPORT_COUNTER_OFFSET: Final = RECEIVER_INDEX_OFFSET + INDEX_SIZE  # 8

# whitepaper §6.1
REKEY_AFTER_MESSAGES: Final = 1 << 60
REJECT_AFTER_MESSAGES: Final = (1 << 64) - (1 << 13) - 1
REKEY_AFTER_TIME: Final = 120.0
REJECT_AFTER_TIME: Final = 180.0
REKEY_ATTEMPT_TIME: Final = 90.0
REKEY_TIMEOUT: Final = 5.0
KEEPALIVE_TIMEOUT: Final = 10.0
MAX_TIMER_HANDSHAKES: Final = int(REKEY_ATTEMPT_TIME / REKEY_TIMEOUT)  # 18
REKEY_TIMEOUT_JITTER_MAX: Final = 1.0 / 3.0  # 0-333 ms added to REKEY_TIMEOUT
ZERO_KEY_MATERIAL_AFTER: Final = 3 * REJECT_AFTER_TIME  # 540 s
# initiator rekeys on receive when the key is this old (whitepaper §6.2)
REKEY_ON_RECEIVE_AGE: Final = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT  # 165 s

# whitepaper §5.4.7 / §6.6: cookies
COOKIE_SECRET_MAX_AGE: Final = 120.0
COOKIE_SECRET_LATENCY: Final = 5.0
COOKIE_VALID_FOR: Final = COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY  # 115 s

# Under load (whitepaper §5.3): more than UNDER_LOAD_THRESHOLD handshake
# messages within UNDER_LOAD_WINDOW puts the device under load for
# UNDER_LOAD_AFTER_TIME (wireguard-go uses a queue depth of 1024/8; a sans-IO
# core sees a rate instead). The default of Device(under_load_threshold=...),
# which the native plane applies too.
UNDER_LOAD_THRESHOLD: Final = 128
UNDER_LOAD_WINDOW: Final = 1.0
UNDER_LOAD_AFTER_TIME: Final = 1.0

# Handshake initiations consumed per peer: at most 50/s (wireguard-go, Linux)
INITIATIONS_PER_SECOND: Final = 50
INITIATION_MIN_INTERVAL: Final = 1.0 / INITIATIONS_PER_SECOND
# TAI64N sent rounded down to 2^24 ns, as wireguard-go does (hides clock precision)
TAI64N_NSEC_ROUND: Final = 1 << 24

# Replay window: RFC 6479 with 8192-bit ring (Linux, wireguard-go)
REPLAY_BITS_TOTAL: Final = 8192
REPLAY_BITS_PER_WORD: Final = 64
REPLAY_WORDS: Final = REPLAY_BITS_TOTAL // REPLAY_BITS_PER_WORD  # 128
REPLAY_WINDOW_SIZE: Final = REPLAY_BITS_TOTAL - REPLAY_BITS_PER_WORD  # 8128

# Packets staged per peer while no session exists (wireguard-go: 128)
MAX_STAGED_PACKETS: Final = 128
DEFAULT_MTU: Final = 1420

# Linux TUN: the largest IP packet a read returns (IPv4's 16-bit total
# length), and with IFF_VNET_HDR (offloads) the struct virtio_net_hdr
# (linux/virtio_net.h) before each packet, on the fd that the shell
# (pywg.asyncio.tun) and the native plane both read and write.
MAX_IP_PACKET_SIZE: Final = 65535
VNET_HDR_LEN: Final = 10

# The native plane's hand-off queue (pywg._fast.plane): the kind of an item
# pywg_plane_pop returns, a datagram from the UDP socket or a TUN packet.
PLANE_ITEM_DATAGRAM: Final = 1
PLANE_ITEM_PACKET: Final = 2

# A prefix in packed form, as the allowed-IPs tables take and give them in
# bulk (pywg.allowedips.PrefixList, lpm.c): the family (4 or 6), the prefix
# length, then 16 address bytes in network order (IPv4 in the first 4).
PREFIX_RECORD_SIZE: Final = 18

# The largest UAPI request (pywg.uapi), and so the largest configuration file
# `pywg up` reads (pywg.config): 16 MiB holds 300,000 to 600,000 allowed IPs.
UAPI_MAX_REQUEST: Final = 16 << 20

# Mesh relays (pywg.relayed): a WireGuard message on its way through a relay
# carries the other node's mesh id, 24 bits big-endian, in the three reserved
# bytes after its type (zero between WireGuard peers, whitepaper §5.4; the
# receiver zeroes them again before mac1 is checked). A peer reached through
# relay number R (1..MAX_RELAY_INDEX) is held at the endpoint [100::ID]:R,
# ID in the address's low 32 bits, in the discard-only prefix 100::/64
# (RFC 6666: its first 16 bits are RELAYED_PREFIX_HIGH, the next 48 zero),
# so a relayed peer looks like any other to the core, the UAPI and `wg`.
RELAY_TAG_OFFSET: Final = 1
RELAY_TAG_SIZE: Final = 3
MAX_RELAY_NODE_ID: Final = (1 << 24) - 1
RELAYED_PREFIX_HIGH: Final = 0x0100
MAX_RELAY_INDEX: Final = 15  # relays a device holds at once: the native plane's table

# The packet filter (pywg.policy.model, filter.c; docs/policy.md): how long a
# tracked flow lives after its last packet, in seconds, by state. TCP seen
# both ways and not closing; TCP seen one way only (a SYN awaiting its answer);
# TCP after a FIN or RST; UDP; ICMP echo and other protocols; and an allowed
# first fragment, whose later fragments pass while it lives.
FLOW_TIMEOUT_TCP_ESTABLISHED: Final = 7200.0
FLOW_TIMEOUT_TCP_OPENING: Final = 30.0
FLOW_TIMEOUT_TCP_CLOSING: Final = 60.0
FLOW_TIMEOUT_UDP: Final = 120.0
FLOW_TIMEOUT_OTHER: Final = 30.0
FLOW_TIMEOUT_FRAGMENT: Final = 30.0
# The flow table's default size (entries, a power of two; 64 bytes each) and the
# largest rule table the native filter takes (rows: pywg.policy.rules.flatten).
FLOW_TABLE_SIZE: Final = 65536
FILTER_MAX_ROWS: Final = 1 << 20
# What the filter says of an inbound packet: it passes (0) or why it is dropped.
FILTER_PASS: Final = 0
FILTER_DROP_NO_RULE: Final = 1  # no rule allows it and it answers no tracked flow
FILTER_DROP_MALFORMED: Final = 2  # truncated or inconsistent headers
FILTER_DROP_FRAGMENT: Final = 3  # a later fragment whose first was not allowed

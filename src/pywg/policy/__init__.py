"""The access policy: who may reach what (docs/policy.md). Sans-IO.

- `document`: the policy file (`parse_policy`, `PolicyError` with line and reason,
  `check_names`); `jsonc`: the JSON-with-comments reader it is built on.
- `compiler`: a policy and the mesh's members (`Member`) to one node's inbound
  rules (`compile_inbound`) and who may talk at all (`peers_allowed`).
- `rules`: compiled rules (`InboundRule`), their compact JSON form for the roster
  (`encode`, `decode`) and their rows as the filters scan them (`flatten`).
- `packet`, `model`: the packet filter in Python (`PacketFilter`), the pure path's
  and the model of the native plane's ``filter.c``.
"""

from __future__ import annotations

from .compiler import Member, compile_inbound, peers_allowed
from .document import Policy, PolicyError, check_names, is_tag, parse_policy
from .model import FilterStats, PacketFilter
from .rules import InboundRule, Proto, RulesError, decode, encode

__all__ = [
    "FilterStats",
    "InboundRule",
    "Member",
    "PacketFilter",
    "Policy",
    "PolicyError",
    "Proto",
    "RulesError",
    "check_names",
    "compile_inbound",
    "decode",
    "encode",
    "is_tag",
    "parse_policy",
    "peers_allowed",
]

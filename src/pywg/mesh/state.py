"""A mesh node's state directory: its keys, made here and never sent, and what it joined.

    DIR/                   0700
      wireguard.key        0600  the WireGuard private key (base64, as `wg genkey`)
      control.key          0600  the Ed25519 control key's seed (base64; pywg.mesh.auth)
      node.json            0600  the coordinator joined: URL, its public key, our name, and
                                 the pin of its own TLS certificate (if the token had one)
      roster.json          0600  the last roster it gave (used when it cannot be reached)
      *.key.next           0600  new keys of a rotation in flight (pywg.mesh.rotation):
                                 written before the coordinator is asked, moved over
                                 the keys once it took them

Keys are created on first use, and every file is written atomically
(`pywg.system.secretfile.write_secret_file`). A node that restarts keeps its
keys, so it keeps its identity, its tunnel addresses and its place in every
peer's configuration, and does not need a join token again.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from dataclasses import dataclass
from typing import Final

from nacl.signing import SigningKey

from ..exceptions import LocalProtocolError
from ..keys import PrivateKey
from ..system.secretfile import write_secret_file
from . import tls
from .schema import Roster

WIREGUARD_KEY: Final = "wireguard.key"
CONTROL_KEY: Final = "control.key"
NODE_FILE: Final = "node.json"
ROSTER_FILE: Final = "roster.json"
NEXT: Final = ".next"  # suffix of the staged keys of a rotation


class StateError(RuntimeError):
    """The state directory cannot be used; str() says which file and why."""


@dataclass(slots=True)
class Joined:
    url: str
    coordinator_key: bytes
    name: str
    tls_pin: bytes | None = None  # pywg.mesh.tls: its certificate, pinned by the join token


@dataclass(slots=True)
class NodeState:
    directory: str
    wireguard: PrivateKey
    control: SigningKey
    joined: Joined | None

    def __repr__(self) -> str:  # never the keys
        return f"<NodeState {self.directory} {self.wireguard.public_key.to_base64()}>"

    @property
    def public_key(self) -> str:
        return self.wireguard.public_key.to_base64()

    @classmethod
    def open(cls, directory: str) -> NodeState:
        """Load the state in `directory`, creating the directory and keys as needed."""
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)
        except OSError as exc:
            raise StateError(f"cannot use {directory}: {exc.strerror or exc}") from None
        wg_path = os.path.join(directory, WIREGUARD_KEY)
        control_path = os.path.join(directory, CONTROL_KEY)
        try:
            if not os.path.exists(wg_path):
                write_secret_file(wg_path, PrivateKey.generate().to_base64() + "\n")
            if not os.path.exists(control_path):
                seed = base64.b64encode(bytes(SigningKey.generate())).decode()
                write_secret_file(control_path, seed + "\n")
            wireguard = PrivateKey.from_base64(_read(wg_path))
            control = SigningKey(base64.b64decode(_read(control_path), validate=True))
        except OSError as exc:
            raise StateError(f"cannot read or write keys in {directory}: {exc}") from None
        except (LocalProtocolError, binascii.Error, ValueError, TypeError):
            raise StateError(f"a key file in {directory} is damaged") from None
        return cls(directory, wireguard, control, _load_joined(os.path.join(directory, NODE_FILE)))

    def save_joined(self, joined: Joined) -> None:
        text = json.dumps(
            {
                "url": joined.url,
                "coordinator_key": base64.b64encode(joined.coordinator_key).decode(),
                "name": joined.name,
                "tls_pin": tls.format_pin(joined.tls_pin) if joined.tls_pin else None,
            }
        )
        write_secret_file(os.path.join(self.directory, NODE_FILE), text + "\n")
        self.joined = joined

    def stage_keys(self, wireguard: PrivateKey, control: SigningKey) -> None:
        """Keep new keys beside the current ones before the coordinator is asked to take
        them: a node that dies in between still has them (`staged_keys`)."""
        seed = base64.b64encode(bytes(control)).decode()
        write_secret_file(self._path(WIREGUARD_KEY) + NEXT, wireguard.to_base64() + "\n")
        write_secret_file(self._path(CONTROL_KEY) + NEXT, seed + "\n")

    def staged_keys(self) -> tuple[PrivateKey, SigningKey] | None:
        """The keys `stage_keys` kept, if any (None: none, or damaged)."""
        try:
            wireguard = PrivateKey.from_base64(_read(self._path(WIREGUARD_KEY) + NEXT))
            seed = base64.b64decode(_read(self._path(CONTROL_KEY) + NEXT), validate=True)
            return wireguard, SigningKey(seed)
        except (OSError, LocalProtocolError, binascii.Error, ValueError, TypeError):
            return None

    def commit_keys(self) -> None:
        """The staged keys become the node's keys (the coordinator took them)."""
        staged = self.staged_keys()
        if staged is None:
            raise StateError(f"no staged keys in {self.directory}")
        for name in (WIREGUARD_KEY, CONTROL_KEY):
            os.replace(self._path(name) + NEXT, self._path(name))
        self.wireguard, self.control = staged

    def drop_staged_keys(self) -> None:
        """Forget staged keys the coordinator refused."""
        for name in (WIREGUARD_KEY, CONTROL_KEY):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(name) + NEXT)

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def save_roster(self, roster: Roster) -> None:
        text = json.dumps(roster.to_json())
        write_secret_file(os.path.join(self.directory, ROSTER_FILE), text + "\n")

    def load_roster(self) -> Roster | None:
        """The last roster saved, or None (none yet, or unreadable: it is only a cache)."""
        try:
            with open(os.path.join(self.directory, ROSTER_FILE), encoding="utf-8") as handle:
                return Roster.from_json(json.load(handle))
        except (OSError, ValueError):  # not JSON, or not a roster (SchemaError)
            return None


def _read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read().strip()


def _load_joined(path: str) -> Joined | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        key = base64.b64decode(data["coordinator_key"], validate=True)
        if len(key) != 32 or not isinstance(data["url"], str) or not isinstance(data["name"], str):
            raise ValueError
        pin = data.get("tls_pin")
        return Joined(data["url"], key, data["name"], tls.parse_pin(pin) if pin else None)
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        raise StateError(f"{path} is damaged; remove it to join again") from None

"""pywg.mesh.wire (home relay associations and probes, as STUN with pywg attributes), and
join tokens."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from pywg import stun
from pywg.keys import PrivateKey
from pywg.mesh import wire
from pywg.messages import message_type

KEY = bytes(PrivateKey.generate().public_key)
OTHER = bytes(PrivateKey.generate().public_key)
T = 1_800_000_000_000


RELAY = bytes(SigningKey.generate().verify_key)


def test_association_round_trip_and_what_its_signature_covers() -> None:
    control = SigningKey.generate()
    tid = stun.new_transaction_id()
    data = wire.association_request(tid, KEY, control, RELAY, T)
    assert stun.is_stun(data) and message_type(data) == 0  # never taken for WireGuard
    association = wire.parse_association(stun.parse_message(data))
    assert association is not None
    assert (association.transaction_id, association.node_key, association.time_ms) == (tid, KEY, T)
    verify = bytes(control.verify_key)
    assert association.verify(RELAY, verify)
    assert not association.verify(OTHER, verify)  # another relay
    assert not association.verify(RELAY, bytes(SigningKey.generate().verify_key))  # another key
    for field, value in (("time_ms", T + 1), ("node_key", OTHER), ("transaction_id", bytes(12))):
        forged = wire.Association(**{**_fields(association), field: value})
        assert not forged.verify(RELAY, verify), field


def _fields(association: wire.Association) -> dict[str, object]:
    names = ("transaction_id", "node_key", "time_ms", "signature")
    return {name: getattr(association, name) for name in names}


def test_plain_stun_and_probes_are_not_associations() -> None:
    tid = stun.new_transaction_id()
    assert wire.parse_association(stun.parse_message(stun.binding_request(tid))) is None
    assert wire.parse_association(stun.parse_message(wire.probe_request(tid, KEY))) is None


def test_association_with_a_short_key_is_refused_when_made() -> None:
    with pytest.raises(ValueError):
        wire.association_request(
            stun.new_transaction_id(), KEY[:31], SigningKey.generate(), RELAY, T
        )
    with pytest.raises(ValueError):
        wire.association_request(
            stun.new_transaction_id(), KEY, SigningKey.generate(), RELAY[:31], T
        )


@pytest.mark.parametrize("source", [("198.18.0.9", 51820), ("fd18::9", 51820)])
def test_probe_answer_names_the_answerer_and_amplifies_nothing(source: tuple[str, int]) -> None:
    tid = stun.new_transaction_id()
    probe = wire.probe_request(tid, KEY)
    message = stun.parse_message(probe)
    assert wire.probe_target(message) == KEY
    answer = wire.probe_answer(message, source, KEY)
    assert answer is not None and len(answer) <= len(probe)
    response = stun.parse_binding_response(answer)
    assert response.transaction_id == tid and response.mapped == source
    assert wire.answered_by(response) == KEY


def test_an_unpadded_probe_gets_no_answer() -> None:
    tid = stun.new_transaction_id()
    bare = stun.parse_message(stun.binding_request(tid, [(wire.ATTR_KEY, KEY)]))
    assert wire.probe_target(bare) == KEY
    assert wire.probe_answer(bare, ("198.18.0.9", 1), KEY) is None


def test_associations_are_not_probes_and_plain_answers_name_nobody() -> None:
    data = wire.association_request(stun.new_transaction_id(), KEY, SigningKey.generate(), RELAY, T)
    assert wire.probe_target(stun.parse_message(data)) is None
    tid = stun.new_transaction_id()
    plain = stun.parse_binding_response(stun.binding_success(tid, ("198.18.0.1", 9)))
    assert wire.answered_by(plain) is None


def test_join_tokens_never_read_as_an_option() -> None:
    from pywg.mesh import auth

    key = bytes(SigningKey.generate().verify_key)
    for _ in range(500):  # a leading "-" would come up about 8 times in 500 without the rule
        token, digest = auth.new_token(key)
        assert not token.startswith("-")
        parsed = auth.parse_token(token)
        assert auth.token_hash(parsed.secret) == digest
        assert parsed.fingerprint == auth.fingerprint(key) and parsed.tls_pin is None


def _request(control: SigningKey, time_ms: int, body: bytes = b"{}") -> object:
    from pywg.mesh import auth

    header, _ = auth.sign_request(control, "n" * 43 + "=", "POST", "/v1/update", body, time_ms)
    return auth.parse_authorization(header)


def test_replay_guard_takes_reordered_requests_and_refuses_replays() -> None:
    from pywg.mesh import auth

    control = SigningKey.generate()
    guard = auth.ReplayGuard()
    now = T
    first, second = _request(control, now - 200), _request(control, now - 100)
    assert guard.accept(1, second, now, None)  # the later one overtook the earlier one
    assert guard.accept(1, first, now, None)
    assert not guard.accept(1, first, now, None)  # the same request again
    assert not guard.accept(1, second, now + 1000, None)
    # far older than the newest: refused even though never seen
    assert not guard.accept(1, _request(control, now - auth.REORDER_MS - 101), now, None)
    # outside the clock skew either way
    assert not guard.accept(1, _request(control, now + auth.MAX_SKEW_MS + 1), now, None)
    # other nodes have records of their own
    assert guard.accept(2, first, now, None)


def test_replay_guard_after_a_restart_takes_nothing_older_than_the_record() -> None:
    from pywg.mesh import auth

    control = SigningKey.generate()
    guard = auth.ReplayGuard()  # a new coordinator process
    assert not guard.accept(1, _request(control, T - 10), T, T - 5)
    assert not guard.accept(1, _request(control, T - 5), T, T - 5)
    assert guard.accept(1, _request(control, T - 4), T, T - 5)
    guard.forget(1)
    assert guard.accept(1, _request(control, T - 3), T, None)

"""The server's symmetric chunks read and written by hand (server/security/symmetric_chunks.py) against asyncua
2.1.0's own `SecureConnection`, over real keys: the same bytes sent, the same messages received, the same refusals,
for every policy and mode the server offers and for messages of one chunk and of several."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.connection import MessageChunk, SecureConnection, TransportLimits
from asyncua.common.utils import Buffer, NotEnoughData
from asyncua.crypto import security_policies, uacrypto
from asyncua.crypto.uacrypto import InvalidSignature
from asyncua.ua.ua_binary import header_from_binary
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from qualitybridge.server.asyncua_pin import PINNED_ASYNCUA_VERSION
from qualitybridge.server.security import block_ciphers
from qualitybridge.server.security.symmetric_chunks import FastSymmetricConnection
from tests.pki_helpers import TestCa
from tests.secure_channel import MODES, SECURE_POLICIES, derive_keys, keyed_policies

CHUNK_SIZE = 8192  # what an end sends in one chunk: small, so that a few kilobytes take several chunks
RECEIVE_SIZE = 65535  # what an end accepts in one chunk: another limit, so that one cannot stand in for the other
# empty, one byte, typical requests and responses, several chunks (one chunk's limit and around it: `_sizes`)
BODY_SIZES = [0, 1, 200, 1000, 30_000]
MSG, CLO = ua.MessageType.SecureMessage, ua.MessageType.SecureClose


@pytest.fixture(autouse=True, params=["asyncua's ciphers", "kept ciphers"])
def ciphers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test with asyncua's own per-message AES-CBC and with the server's kept contexts (block_ciphers.py),
    which a server installs process-wide: renewals, the previous key's fallback and refusals through both."""
    kept = request.param == "kept ciphers"
    monkeypatch.setattr(
        uacrypto, "cipher_encrypt", block_ciphers.cipher_encrypt if kept else block_ciphers._fresh_encrypt
    )
    monkeypatch.setattr(
        uacrypto, "cipher_decrypt", block_ciphers.cipher_decrypt if kept else block_ciphers._fresh_decrypt
    )


@pytest.fixture(scope="module")
def certificates() -> tuple[tuple[x509.Certificate, rsa.RSAPrivateKey], tuple[x509.Certificate, rsa.RSAPrivateKey]]:
    """A client's and a server's certificate and key, issued by one CA."""
    authority = TestCa.create("Symmetric chunks CA")
    client, server = (authority.issue(name, f"urn:qualitybridge:test:{name}") for name in ("client", "server"))
    return (client.certificate, client.key), (server.certificate, server.key)


def _sender(certificates: Any, policy: str, mode: str, connection_class: type[SecureConnection]) -> SecureConnection:
    """The sending end of a secure channel, keyed as OpenSecureChannel keys it."""
    (sender_policy,) = keyed_policies(policy, mode, *certificates, receivers=0)
    return _end(connection_class, sender_policy)


def _end(connection_class: type[SecureConnection], policy: Any) -> SecureConnection:
    end = connection_class(policy, TransportLimits(RECEIVE_SIZE, CHUNK_SIZE, 0, 0))
    end.security_token.ChannelId = 17
    end.security_token.TokenId = 4
    return end


@dataclasses.dataclass
class _Receivers:
    """An asyncua sender, and two receivers of what it sends with the same keys: asyncua's and the server's."""

    sender: SecureConnection
    reference: SecureConnection
    fast: SecureConnection

    def renew_keys(self) -> None:
        """A new token's keys on all three, as a renewed OpenSecureChannel derives them (the old ones kept a while)."""
        derive_keys(self.sender.security_policy, [self.reference.security_policy, self.fast.security_policy])


def _receivers(certificates: Any, policy: str, mode: str) -> _Receivers:
    sender, reference, fast = keyed_policies(policy, mode, *certificates, receivers=2)
    return _Receivers(
        _end(SecureConnection, sender), _end(SecureConnection, reference), _end(FastSymmetricConnection, fast)
    )


def _split(data: bytes) -> list[bytes]:
    """The chunks in `data`, by the size in each one's header."""
    chunks = []
    while data:
        size = int.from_bytes(data[4:8], "little")
        chunks.append(data[:size])
        data = data[size:]
    return chunks


def _outcome(receiver: SecureConnection, chunk: bytes) -> tuple[Any, ...]:
    """What a receiver makes of one chunk, and the state it keeps for the next: the answer (None for a chunk of a
    message not complete yet) or the refusal's type; whether it fell back to the previous key; the last sequence
    number; the chunks it holds of an incomplete message."""
    buffer = Buffer(chunk)
    try:
        answer = receiver.receive_from_header_and_body(header_from_binary(buffer), buffer)
    except Exception as error:
        result: Any = type(error)
    else:
        result = answer
        if isinstance(answer, ua.Message):
            body = answer.body()
            result = (
                body.read(len(body)),
                answer.request_id(),
                answer.SequenceHeader(),
                answer.SecurityHeader(),
                [(vars(chunk.MessageHeader), chunk.Body) for chunk in answer._chunks],
            )
    crypto = receiver.security_policy.symmetric_cryptography
    return result, getattr(crypto, "_use_prev_key", None), receiver._peer_sequence_number, len(receiver._incoming_parts)


def _same_as_asyncua(receivers: _Receivers, data: bytes) -> list[Any]:
    """Each chunk of `data` to both receivers: the same answer or refusal, the same state after it. The answers."""
    answers = []
    for chunk in _split(data):
        expected = _outcome(receivers.reference, chunk)
        assert _outcome(receivers.fast, chunk) == expected
        answers.append(expected[0])
    return answers


def _sizes(connection: SecureConnection) -> list[int]:
    """BODY_SIZES and the bodies around one and two chunks' limit of this channel's policy."""
    limit = MessageChunk.max_body_size(connection.security_policy.symmetric_cryptography, CHUNK_SIZE)
    return [*BODY_SIZES, limit - 1, limit, limit + 1, 2 * limit, 2 * limit + 1]


def _chunk(sender: SecureConnection, chunk_type: bytes, request_id: int, body: bytes) -> bytes:
    """One chunk of any type, secured as asyncua secures a message's chunks."""
    chunk = MessageChunk(sender.security_policy.symmetric_cryptography, body, MSG, chunk_type)  # type: ignore[arg-type]
    chunk.SecurityHeader.TokenId = sender.security_token.TokenId  # type: ignore[union-attr]
    chunk.MessageHeader.ChannelId = sender.security_token.ChannelId
    sender._sequence_number += 1
    chunk.SequenceHeader.SequenceNumber = sender._sequence_number
    chunk.SequenceHeader.RequestId = request_id
    return chunk.to_binary()


ALL_POLICIES = [(policy, mode) for policy in SECURE_POLICIES for mode in MODES] + [("None", "None")]
SECURED = [(policy, mode) for policy, mode in ALL_POLICIES if policy != "None"]


def test_written_for_the_pinned_asyncua() -> None:
    assert importlib.metadata.version("asyncua") == PINNED_ASYNCUA_VERSION, "check symmetric_chunks.py against it"


@pytest.mark.parametrize(("policy", "mode"), ALL_POLICIES)
@pytest.mark.parametrize("message_type", [MSG, CLO])
def test_sends_the_bytes_asyncua_sends(certificates: Any, policy: str, mode: str, message_type: Any) -> None:
    asyncua_end = _sender(certificates, policy, mode, SecureConnection)
    fast_end = _sender(certificates, policy, mode, FastSymmetricConnection)
    fast_end.security_policy = asyncua_end.security_policy  # the same keys on both
    for first_sequence_number in (0, 2**32 - 3):  # the second wraps inside a message of several chunks
        asyncua_end._sequence_number = fast_end._sequence_number = first_sequence_number
        for size in _sizes(asyncua_end):
            body = os.urandom(size)
            for request_id in (1, 2**32 - 1):
                expected = asyncua_end.message_to_binary(body, message_type, request_id)
                assert fast_end.message_to_binary(body, message_type, request_id) == expected, (size, request_id)
                assert fast_end._sequence_number == asyncua_end._sequence_number


@pytest.mark.parametrize(("policy", "mode"), SECURED)
def test_sends_the_bytes_asyncua_sends_after_a_renewal_and_a_new_send_buffer(
    certificates: Any, policy: str, mode: str
) -> None:
    # The chunk sizes are kept between messages: they must follow the peer's buffer, and a renewal's new keys must
    # be used (a cipher or signer kept from before would send what the peer can no longer read).
    asyncua_end = _sender(certificates, policy, mode, SecureConnection)
    fast_end = _sender(certificates, policy, mode, FastSymmetricConnection)
    fast_end.security_policy = asyncua_end.security_policy
    body = os.urandom(3 * CHUNK_SIZE)
    for change in ("first", "renewal", "smaller buffer", "renewal", "larger buffer"):
        if change == "renewal":
            receiver = keyed_policies(policy, mode, *certificates, receivers=1)[1]
            derive_keys(asyncua_end.security_policy, [receiver])
        elif change.endswith("buffer"):
            size = CHUNK_SIZE // 2 if change.startswith("smaller") else CHUNK_SIZE * 2
            asyncua_end._limits.max_send_buffer = fast_end._limits.max_send_buffer = size
        expected = asyncua_end.message_to_binary(body, MSG, 7)
        assert fast_end.message_to_binary(body, MSG, 7) == expected, change


@pytest.mark.parametrize(("policy", "mode"), ALL_POLICIES)
@pytest.mark.parametrize("message_type", [MSG, CLO])
def test_receives_what_asyncua_receives(certificates: Any, policy: str, mode: str, message_type: Any) -> None:
    receivers = _receivers(certificates, policy, mode)
    for request_id, size in enumerate(_sizes(receivers.sender), start=1):
        body = os.urandom(size)
        answers = _same_as_asyncua(receivers, receivers.sender.message_to_binary(body, message_type, request_id))
        if size == 0:
            assert answers == []  # asyncua sends no chunk for an empty message
            continue
        assert answers[:-1] == [None] * (len(answers) - 1)
        assert answers[-1][:2] == (body, request_id)


def test_a_message_wrapping_the_sequence_numbers_is_received_as_by_asyncua(certificates: Any) -> None:
    receivers = _receivers(certificates, "Basic256Sha256", "Sign")
    receivers.sender._sequence_number = 2**32 - 3
    receivers.reference._peer_sequence_number = receivers.fast._peer_sequence_number = 2**32 - 3
    body = os.urandom(3 * CHUNK_SIZE)  # four chunks: 2**32 - 2, 2**32 - 1, 1, 2
    answers = _same_as_asyncua(receivers, receivers.sender.message_to_binary(body, MSG, 7))
    assert answers[-1][0] == body
    assert receivers.fast._peer_sequence_number == 2


@pytest.mark.parametrize(("policy", "mode"), SECURED)
@pytest.mark.parametrize(
    ("where", "refusal"),
    [
        ("message type", InvalidSignature),  # MSG read as CLO: the signature covers the header
        ("chunk type", InvalidSignature),  # a final chunk read as an intermediate one
        ("channel id", InvalidSignature),
        ("token id", ua.UaError),  # refused before anything is decrypted
        ("sequence header", InvalidSignature),
        ("body", InvalidSignature),
        ("signature", InvalidSignature),
    ],
)
def test_a_changed_byte_is_refused_as_asyncua_refuses_it(
    certificates: Any, policy: str, mode: str, where: str, refusal: type[Exception]
) -> None:
    receivers = _receivers(certificates, policy, mode)
    data = bytearray(receivers.sender.message_to_binary(os.urandom(300), MSG, 1))
    if where == "message type":
        data[:3] = b"CLO"
    elif where == "chunk type":
        data[3:4] = b"C"
    else:
        offset = {"channel id": 11, "token id": 15, "sequence header": 17, "body": 100, "signature": -1}[where]
        data[offset] ^= 0x01
    (answer,) = _same_as_asyncua(receivers, bytes(data))
    assert answer is refusal


@pytest.mark.parametrize(("policy", "mode"), [(policy, mode) for policy, mode in SECURED if mode == "SignAndEncrypt"])
def test_an_encrypted_part_of_broken_blocks_is_not_tried_with_the_previous_key(
    certificates: Any, policy: str, mode: str
) -> None:
    """Only a wrong signature sends a chunk to the previous key; a cipher text that is no whole number of blocks is
    refused as it is (ValueError), and the receiver does not stay on the previous key."""
    receivers = _receivers(certificates, policy, mode)
    receivers.renew_keys()  # a previous key to fall back to
    data = bytearray(receivers.sender.message_to_binary(os.urandom(300), MSG, 1))[:-1]
    data[4:8] = len(data).to_bytes(4, "little")
    (answer,) = _same_as_asyncua(receivers, bytes(data))
    assert answer is ValueError
    assert receivers.fast.security_policy.symmetric_cryptography._use_prev_key is False


@pytest.mark.parametrize(("policy", "mode"), SECURED)
def test_chunks_under_the_previous_key_are_accepted_after_a_renewal_until_it_expires(
    certificates: Any, policy: str, mode: str
) -> None:
    """OPC UA Part 4, 5.5.2.1: messages secured with the previous token's keys are still accepted for a while."""
    receivers = _receivers(certificates, policy, mode)
    sender = receivers.sender
    old_1, old_2 = (sender.message_to_binary(f"old {n}".encode(), MSG, n) for n in (1, 2))
    sender._sequence_number = 3
    old_4 = sender.message_to_binary(b"old 4", MSG, 4)  # sent before the renewal, arriving last (sequence number 4)
    sender._sequence_number = 2
    receivers.renew_keys()
    new_3 = sender.message_to_binary(b"new 3", MSG, 3)
    fallbacks = []
    for data, text in ((old_1, b"old 1"), (old_2, b"old 2"), (new_3, b"new 3")):
        (answer,) = _same_as_asyncua(receivers, data)
        assert answer[0] == text
        fallbacks.append(receivers.fast.security_policy.symmetric_cryptography._use_prev_key)
    assert fallbacks == [True, True, False]
    for receiver in (receivers.reference, receivers.fast):
        receiver.security_policy.symmetric_cryptography.prev_key_expiration = 0.0  # the previous keys expired
    # The server refuses a chunk under an expired key in both modes. asyncua drops expired keys only when it
    # decrypts: under SignAndEncrypt it refuses too, under Sign it accepted the chunk until the next renewal.
    assert _outcome(receivers.fast, old_4)[0] is InvalidSignature
    expected = _outcome(receivers.reference, old_4)[0]
    assert expected is InvalidSignature if mode == "SignAndEncrypt" else expected[0] == b"old 4"


def test_intermediate_abort_and_unknown_chunks_are_taken_as_by_asyncua(certificates: Any) -> None:
    receivers = _receivers(certificates, "Aes128Sha256RsaOaep", "SignAndEncrypt")
    sender = receivers.sender
    error = ua.ua_binary.struct_to_binary(ua.ErrorMessage(ua.StatusCode(ua.StatusCodes.BadRequestCancelledByClient)))
    sequences: list[tuple[list[tuple[bytes, int, bytes]], list[Any]]] = [
        # two parts and the last: one message
        ([(b"C", 1, b"one "), (b"C", 1, b"two "), (b"F", 1, b"three")], [None, None, (b"one two three", 1)]),
        # a part, then the sender gives the message up: nothing, and the part is dropped
        ([(b"C", 2, b"part"), (b"A", 2, error)], [None, None]),
        # a part of another request in between: refused
        ([(b"C", 3, b"part"), (b"F", 4, b"other")], [None, ua.UaError]),
    ]
    for chunks, expected in sequences:
        answers = [_same_as_asyncua(receivers, _chunk(sender, *chunk))[0] for chunk in chunks]
        assert [answer[:2] if isinstance(answer, tuple) else answer for answer in answers] == expected
    receivers = _receivers(certificates, "Aes128Sha256RsaOaep", "SignAndEncrypt")
    (answer,) = _same_as_asyncua(receivers, _chunk(receivers.sender, b"X", 5, b"unknown chunk type"))
    assert answer is ua.UaError


def test_a_wrong_token_id_or_a_replayed_chunk_is_refused(certificates: Any) -> None:
    receivers = _receivers(certificates, "Basic256Sha256", "SignAndEncrypt")
    first = receivers.sender.message_to_binary(b"first", MSG, 1)
    _same_as_asyncua(receivers, first)
    with pytest.raises(ua.UaError, match="wrong sequence"):
        _outcome_raising(receivers.fast, first)
    receivers.sender.security_token.TokenId = 99
    with pytest.raises(ua.UaError, match="Invalid security token id 99"):
        _outcome_raising(receivers.fast, receivers.sender.message_to_binary(b"second", MSG, 2))


def _outcome_raising(receiver: SecureConnection, chunk: bytes) -> Any:
    buffer = Buffer(chunk)
    return receiver.receive_from_header_and_body(header_from_binary(buffer), buffer)


@pytest.mark.parametrize("size", [2, 4 + 5])
def test_a_chunk_too_short_for_its_headers_is_refused_as_by_asyncua(certificates: Any, size: int) -> None:
    """2 bytes: no room for the token id; 4 + 5: a token id and five bytes, no room for the sequence header."""
    receivers = _receivers(certificates, "None", "None")
    body = (4).to_bytes(4, "little") + b"short"
    (answer,) = _same_as_asyncua(
        receivers, b"MSGF" + (12 + size).to_bytes(4, "little") + (17).to_bytes(4, "little") + body[:size]
    )
    assert answer is NotEnoughData


def test_open_secure_channel_and_transport_messages_stay_asyncuas(certificates: Any) -> None:
    sender = _sender(certificates, "Basic256Sha256", "SignAndEncrypt", FastSymmetricConnection)
    reference = _sender(certificates, "Basic256Sha256", "SignAndEncrypt", SecureConnection)
    reference.security_policy = sender.security_policy
    # asymmetric encryption is randomised (OAEP): compare what is not, the header and the size
    opened = sender.message_to_binary(b"open", ua.MessageType.SecureOpen, 1)
    expected = reference.message_to_binary(b"open", ua.MessageType.SecureOpen, 1)
    assert opened[:3] == expected[:3] == b"OPN"
    assert len(opened) == len(expected)
    hello = ua.ua_binary.struct_to_binary(ua.Hello())
    receiver = _end(FastSymmetricConnection, security_policies.SecurityPolicyNone())
    buffer = Buffer(b"HELF" + (8 + len(hello)).to_bytes(4, "little") + hello)
    assert receiver.receive_from_header_and_body(header_from_binary(buffer), buffer) == ua.Hello()

"""The server's symmetric chunks read and written by hand (server/security/symmetric_chunks.py) against asyncua
2.1.0's own `SecureConnection`, over real keys: the same bytes sent, the same messages received, the same refusals,
for every policy and mode the server offers and for messages of one chunk and of several."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.connection import SecureConnection, TransportLimits
from asyncua.common.utils import Buffer
from asyncua.crypto import security_policies
from asyncua.crypto.uacrypto import InvalidSignature
from asyncua.ua.ua_binary import header_from_binary
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from qualitybridge.server.asyncua_pin import PINNED_ASYNCUA_VERSION
from qualitybridge.server.security.symmetric_chunks import FastSymmetricConnection

CHUNK_SIZE = 8192  # small, so that a few kilobytes take several chunks
SECURE_POLICIES = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128Sha256RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256Sha256RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
# empty, one byte, typical requests and responses, one chunk's limit and around it, several chunks
BODY_SIZES = [0, 1, 200, 1000, 8000, 8150, 8200, 30_000]


def _certificate() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "symmetric chunks")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate, key


@pytest.fixture(scope="module")
def certificates() -> tuple[tuple[x509.Certificate, rsa.RSAPrivateKey], tuple[x509.Certificate, rsa.RSAPrivateKey]]:
    return _certificate(), _certificate()


def _channel(
    certificates: Any,
    policy: str,
    mode: str,
    sender_class: type[SecureConnection],
    receiver_class: type[SecureConnection],
) -> tuple[SecureConnection, SecureConnection]:
    """Two ends of one secure channel, keys derived from the same nonces as OpenSecureChannel does."""
    (client_cert, client_key), (server_cert, server_key) = certificates
    if policy == "None":
        sender_policy: Any = security_policies.SecurityPolicyNone()
        receiver_policy: Any = security_policies.SecurityPolicyNone()
    else:
        policy_class = SECURE_POLICIES[policy]
        sender_policy = policy_class(server_cert, client_cert, client_key, MODES[mode])
        receiver_policy = policy_class(client_cert, server_cert, server_key, MODES[mode])
    client_nonce, server_nonce = os.urandom(32), os.urandom(32)
    _derive_keys(sender_policy, receiver_policy, client_nonce, server_nonce)
    sender = sender_class(sender_policy, TransportLimits(CHUNK_SIZE, CHUNK_SIZE, 0, 0))
    receiver = receiver_class(receiver_policy, TransportLimits(CHUNK_SIZE, CHUNK_SIZE, 0, 0))
    for end in (sender, receiver):
        end.security_token.ChannelId = 17
        end.security_token.TokenId = 4
    return sender, receiver


def _derive_keys(sender_policy: Any, receiver_policy: Any, client_nonce: bytes, server_nonce: bytes) -> None:
    sender_policy.make_local_symmetric_key(server_nonce, client_nonce)
    sender_policy.make_remote_symmetric_key(client_nonce, server_nonce, 3_600_000)
    receiver_policy.make_local_symmetric_key(client_nonce, server_nonce)
    receiver_policy.make_remote_symmetric_key(server_nonce, client_nonce, 3_600_000)


def _receive_all(receiver: SecureConnection, data: bytes) -> list[Any]:
    """What the receiving end answers for each chunk in `data` (None for an intermediate chunk)."""
    buffer, answers = Buffer(data), []
    while len(buffer):
        answers.append(receiver.receive_from_header_and_body(header_from_binary(buffer), buffer))
    return answers


ALL_POLICIES = [(policy, mode) for policy in SECURE_POLICIES for mode in MODES] + [("None", "None")]


def test_written_for_the_pinned_asyncua() -> None:
    assert importlib.metadata.version("asyncua") == PINNED_ASYNCUA_VERSION, "check symmetric_chunks.py against it"


@pytest.mark.parametrize(("policy", "mode"), ALL_POLICIES)
@pytest.mark.parametrize("message_type", [ua.MessageType.SecureMessage, ua.MessageType.SecureClose])
def test_sends_the_bytes_asyncua_sends(certificates: Any, policy: str, mode: str, message_type: Any) -> None:
    asyncua_end, _ = _channel(certificates, policy, mode, SecureConnection, SecureConnection)
    fast_end, _ = _channel(certificates, policy, mode, FastSymmetricConnection, SecureConnection)
    fast_end.security_policy = asyncua_end.security_policy  # the same keys on both
    for size in BODY_SIZES:
        body = os.urandom(size)
        for request_id in (1, 2**32 - 1):
            expected = asyncua_end.message_to_binary(body, message_type, request_id)
            assert fast_end.message_to_binary(body, message_type, request_id) == expected, (size, request_id)
    assert fast_end._sequence_number == asyncua_end._sequence_number


@pytest.mark.parametrize(("policy", "mode"), ALL_POLICIES)
def test_receives_what_asyncua_receives(certificates: Any, policy: str, mode: str) -> None:
    sender, asyncua_end = _channel(certificates, policy, mode, SecureConnection, SecureConnection)
    fast_end = FastSymmetricConnection(asyncua_end.security_policy, TransportLimits(CHUNK_SIZE, CHUNK_SIZE, 0, 0))
    fast_end.security_token = asyncua_end.security_token
    for request_id, size in enumerate(BODY_SIZES, start=1):
        body = os.urandom(size)
        data = sender.message_to_binary(body, ua.MessageType.SecureMessage, request_id)
        expected, answers = _receive_all(asyncua_end, data), _receive_all(fast_end, data)
        assert [answer is None for answer in answers] == [answer is None for answer in expected]
        if not body:
            assert answers == expected == []  # asyncua sends no chunk for an empty message
            continue
        message, reference = answers[-1], expected[-1]
        assert message.body().read(size) == reference.body().read(size) == body
        assert message.request_id() == reference.request_id() == request_id
        assert message.SequenceHeader() == reference.SequenceHeader()
        assert message.SecurityHeader() == reference.SecurityHeader() == ua.SymmetricAlgorithmHeader(TokenId=4)
        for chunk, reference_chunk in zip(message._chunks, reference._chunks, strict=True):
            assert chunk.MessageHeader.__dict__ == reference_chunk.MessageHeader.__dict__
            assert chunk.Body == reference_chunk.Body


@pytest.mark.parametrize(("policy", "mode"), [(policy, mode) for policy, mode in ALL_POLICIES if policy != "None"])
@pytest.mark.parametrize("where", ["message header", "security header", "sequence header", "body", "signature"])
def test_a_changed_byte_is_refused_as_asyncua_refuses_it(certificates: Any, policy: str, mode: str, where: str) -> None:
    sender, receiver = _channel(certificates, policy, mode, SecureConnection, FastSymmetricConnection)
    data = bytearray(sender.message_to_binary(os.urandom(300), ua.MessageType.SecureMessage, 1))
    # the channel id's last byte; the token id's last byte; then the encrypted or signed part
    offset = {"message header": 11, "security header": 15, "sequence header": 17, "body": 100, "signature": -1}[where]
    data[offset] ^= 0x01
    expected = ua.UaError if where == "security header" else (InvalidSignature, ua.UaError)
    with pytest.raises(expected):
        _receive_all(receiver, bytes(data))


@pytest.mark.parametrize(("policy", "mode"), [("Basic256Sha256", "SignAndEncrypt"), ("Aes128Sha256RsaOaep", "Sign")])
def test_a_chunk_under_the_previous_key_is_accepted_after_a_renewal(certificates: Any, policy: str, mode: str) -> None:
    """OPC UA Part 4, 5.5.2.1: a message secured with the previous token's keys is still accepted for a while."""
    sender, receiver = _channel(certificates, policy, mode, SecureConnection, FastSymmetricConnection)
    before_renewal = sender.message_to_binary(b"sent before the renewal", ua.MessageType.SecureMessage, 1)
    _derive_keys(sender.security_policy, receiver.security_policy, os.urandom(32), os.urandom(32))
    (message,) = _receive_all(receiver, before_renewal)
    assert message.body().read(23) == b"sent before the renewal"
    after_renewal = sender.message_to_binary(b"sent after the renewal", ua.MessageType.SecureMessage, 2)
    (message,) = _receive_all(receiver, after_renewal)
    assert message.body().read(22) == b"sent after the renewal"


def test_a_wrong_token_id_or_a_replayed_chunk_is_refused(certificates: Any) -> None:
    sender, receiver = _channel(
        certificates, "Basic256Sha256", "SignAndEncrypt", SecureConnection, FastSymmetricConnection
    )
    first = sender.message_to_binary(b"first", ua.MessageType.SecureMessage, 1)
    _receive_all(receiver, first)
    with pytest.raises(ua.UaError, match="wrong sequence"):
        _receive_all(receiver, first)
    sender.security_token.TokenId = 99
    with pytest.raises(ua.UaError, match="Invalid security token id 99"):
        _receive_all(receiver, sender.message_to_binary(b"second", ua.MessageType.SecureMessage, 2))


def test_the_sequence_number_wraps_as_asyncua_wraps_it(certificates: Any) -> None:
    sender, receiver = _channel(
        certificates, "Basic256Sha256", "Sign", FastSymmetricConnection, FastSymmetricConnection
    )
    sender._sequence_number = 2**32 - 2
    receiver._peer_sequence_number = 2**32 - 2
    numbers = []
    for request_id in (1, 2, 3):
        (message,) = _receive_all(receiver, sender.message_to_binary(b"x", ua.MessageType.SecureMessage, request_id))
        numbers.append(message.SequenceHeader().SequenceNumber)
    assert numbers == [2**32 - 1, 1, 2]


def test_open_secure_channel_and_transport_messages_stay_asyncuas(certificates: Any) -> None:
    sender, _ = _channel(certificates, "Basic256Sha256", "SignAndEncrypt", FastSymmetricConnection, SecureConnection)
    reference, _ = _channel(certificates, "Basic256Sha256", "SignAndEncrypt", SecureConnection, SecureConnection)
    reference.security_policy = sender.security_policy
    # asymmetric encryption is randomised (OAEP): compare what is not, the header and the sender certificate
    opened = sender.message_to_binary(b"open", ua.MessageType.SecureOpen, 1)
    expected = reference.message_to_binary(b"open", ua.MessageType.SecureOpen, 1)
    assert opened[:3] == expected[:3] == b"OPN"
    assert len(opened) == len(expected)
    hello = ua.ua_binary.struct_to_binary(ua.Hello())
    header = ua.ua_binary.header_to_binary(ua.Header(ua.MessageType.Hello, ua.ChunkType.Single))
    receiver = FastSymmetricConnection(
        security_policies.SecurityPolicyNone(), TransportLimits(CHUNK_SIZE, CHUNK_SIZE, 0, 0)
    )
    buffer = Buffer(header[:4] + (8 + len(hello)).to_bytes(4, "little") + hello)
    assert receiver.receive_from_header_and_body(header_from_binary(buffer), buffer) == ua.Hello()


def test_a_chunk_too_short_for_its_sequence_header_is_refused_as_by_asyncua(certificates: Any) -> None:
    none = security_policies.SecurityPolicyNone()
    chunk = (
        b"MSGF" + (12 + 4 + 5).to_bytes(4, "little") + (17).to_bytes(4, "little") + (4).to_bytes(4, "little") + b"short"
    )
    for receiver_class in (SecureConnection, FastSymmetricConnection):
        receiver = receiver_class(none, TransportLimits(CHUNK_SIZE, CHUNK_SIZE, 0, 0))
        receiver.security_token.ChannelId, receiver.security_token.TokenId = 17, 4
        with pytest.raises(Exception) as refused:  # noqa: PT011 - asyncua's own refusal is a bare buffer error
            _receive_all(receiver, chunk)
        assert receiver_class is SecureConnection or isinstance(refused.value, ua.UaError)

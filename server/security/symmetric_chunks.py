"""The symmetric chunks of a secure channel (every request and response after OpenSecureChannel) read and written
without asyncua's per-chunk objects.

asyncua 2.1.0 turns every chunk it receives into a `MessageChunk` through its generic structure codec (the
security header parsed twice, the message header encoded again for the signature) and builds three dataclasses
and a `MessageChunk` per chunk it sends (`MessageChunk.message_to_chunks`, `to_binary`): about 90 µs of CPU for a
request and its response under Basic256Sha256 SignAndEncrypt, of which the cryptography is about 20; about 55 µs
here (docs/performance.md, issue 11). `FastSymmetricConnection` reads and writes the same bytes with `struct` on the
two message types sent under the channel's symmetric keys (SecureMessage and SecureClose); the cryptography is
asyncua's own policy object, called as asyncua calls it (decrypt, verify, remove_padding; padding, signature,
encrypt), so every policy and mode behaves as before, the previous key's fallback included. One difference on
purpose: the previous token's keys, once expired, are dropped before every chunk is read; asyncua drops them only
when it decrypts, so under Sign (nothing to decrypt) it accepted them until the next renewal. OpenSecureChannel and
the transport messages (Hello, Acknowledge, Error) are asyncua's.

What stays asyncua's after a chunk is read: the token check (`_check_sym_header`, which also revolves tokens) before
it, and the sequence, request id and size checks and reassembly of chunks into a message (`_receive`) after it. One
difference nobody can observe: a chunk refused for its token has been taken out of the buffer already (asyncua reads
a copy); asyncua's protocol gives every chunk a buffer of its own and closes the connection on any refusal.

Used only by the server's connections (server/limits/transport.py) and only over asyncua 2.1.0
(server/asyncua_pin.py), whose `SecureConnection` internals it relies on: `security_policy`, `security_token`,
`_limits`, `_sequence_number`, `_check_sym_header`, `_receive`. tests/unit/test_symmetric_chunks.py pins it to
asyncua's own path byte for byte in both directions, for every policy and mode the server offers.
"""

from __future__ import annotations

import struct
from typing import Any

from asyncua import ua
from asyncua.common.connection import MessageChunk, SecureConnection
from asyncua.common.utils import NotEnoughData
from asyncua.crypto.uacrypto import InvalidSignature

__all__ = ["FastSymmetricConnection"]

# asyncua annotates message types as its MessageType class, whose members are the bytes on the wire
_SYMMETRIC: tuple[Any, ...] = (ua.MessageType.SecureMessage, ua.MessageType.SecureClose)
_MESSAGE_HEADER = struct.Struct("<3scII")  # type, chunk type, whole chunk's size, secure channel id
_UINT32 = struct.Struct("<I")  # the symmetric security header: the token id
_SEQUENCE_HEADER = struct.Struct("<II")  # sequence number, request id
_HEADERS_SIZE = _MESSAGE_HEADER.size  # what a chunk's size counts beyond its body (asyncua's `body_size`)
_WRAP = 1 << 32


class FastSymmetricConnection(SecureConnection):
    """asyncua's secure connection, with the symmetric chunks read and written by hand (same bytes)."""

    # The sizes a written chunk needs (its largest body, the signature's, the cipher's blocks), asked of the policy
    # once: they follow from the algorithms (the kinds of signer and encryptor) and the peer's buffer, not from the
    # keys, which a renewal replaces. Kept by the kinds, so that no replaced key stays referenced here.
    _chunk_sizes: tuple[Any, ...] = (None,)

    def _sizes_for(self, crypto: Any) -> tuple[Any, ...]:
        algorithms = (
            crypto,
            type(getattr(crypto, "Signer", None)),
            type(getattr(crypto, "Encryptor", None)),
            self._limits.max_send_buffer,
        )
        sizes = self._chunk_sizes
        if sizes[0] != algorithms:
            sizes = self._chunk_sizes = (
                algorithms,
                MessageChunk.max_body_size(crypto, self._limits.max_send_buffer),
                crypto.signature_size(),
                crypto.plain_block_size(),
                crypto.encrypted_block_size(),
            )
        return sizes

    def message_to_binary(
        self, message: bytes, message_type: Any = ua.MessageType.SecureMessage, request_id: int = 0
    ) -> bytes:
        if message_type not in _SYMMETRIC:
            return super().message_to_binary(message, message_type, request_id)
        crypto: Any = self.security_policy.symmetric_cryptography
        _algorithms, max_size, signature_size, plain_block, encrypted_block = self._sizes_for(crypto)
        token = self.security_token
        security_header = _UINT32.pack(token.TokenId)
        channel_id = token.ChannelId
        chunks = []
        for start in range(0, len(message), max_size):
            last = start + max_size >= len(message)
            self._sequence_number += 1
            if self._sequence_number >= _WRAP:
                self._sequence_number = 1
            plain = _SEQUENCE_HEADER.pack(self._sequence_number, request_id) + message[start : start + max_size]
            plain += crypto.padding(len(plain))
            signed_size = len(plain) + signature_size
            if signed_size % plain_block != 0:
                raise ua.UaError("Encryption error")  # asyncua's MessageChunk.encrypted_size
            body_size = len(security_header) + signed_size // plain_block * encrypted_block
            header = _MESSAGE_HEADER.pack(
                message_type,
                ua.ChunkType.Single if last else ua.ChunkType.Intermediate,
                body_size + _HEADERS_SIZE,
                channel_id,
            )
            plain += crypto.signature(header + security_header + plain)
            chunks.append(header + security_header + crypto.encrypt(plain))
        return b"".join(chunks)

    def receive_from_header_and_body(self, header: ua.Header, body: Any) -> Any:
        if header.MessageType not in _SYMMETRIC:
            return super().receive_from_header_and_body(header, body)
        size = header.body_size
        if len(body) < size:
            raise ValueError("Full body expected here")  # asyncua's MessageChunk.from_header_and_body
        if size < _UINT32.size:
            raise NotEnoughData(f"Chunk of {size} bytes has no security header")  # as asyncua's Buffer raises it
        chunk_bytes = body.read(size)
        security_header = ua.SymmetricAlgorithmHeader(TokenId=_UINT32.unpack_from(chunk_bytes)[0])
        self._check_sym_header(security_header)
        drop_expired_keys = getattr(self.security_policy.symmetric_cryptography, "revolved_expired_key", None)
        if drop_expired_keys is not None:
            # asyncua drops the previous token's keys once they expired only when it decrypts, so under Sign they
            # were accepted until the next renewal; here under Sign and SignAndEncrypt alike.
            drop_expired_keys()
        try:
            chunk = self._read_chunk(header, security_header, chunk_bytes, use_prev_key=False)
        except InvalidSignature:
            chunk = self._read_chunk(header, security_header, chunk_bytes, use_prev_key=True)
        return self._receive(chunk)

    def _read_chunk(
        self, header: ua.Header, security_header: ua.SymmetricAlgorithmHeader, chunk_bytes: Any, use_prev_key: bool
    ) -> MessageChunk:
        """asyncua's MessageChunk.from_header_and_body for a symmetric chunk: decrypt, verify the signature over the
        headers and the decrypted part, remove the padding, read the sequence header."""
        crypto: Any = self.security_policy.symmetric_cryptography
        crypto.use_prev_key = use_prev_key
        security_bytes = chunk_bytes[: _UINT32.size]
        decrypted = crypto.decrypt(chunk_bytes[_UINT32.size :])
        signature_size = crypto.vsignature_size()
        if signature_size > 0:
            signature = decrypted[-signature_size:]
            decrypted = decrypted[:-signature_size]
            message_header = _MESSAGE_HEADER.pack(
                header.MessageType, header.ChunkType, header.body_size + _HEADERS_SIZE, header.ChannelId
            )
            crypto.verify(message_header + security_bytes + decrypted, signature)
        plain = crypto.remove_padding(decrypted)
        if len(plain) < _SEQUENCE_HEADER.size:
            raise NotEnoughData(f"Chunk of {len(plain)} bytes after decryption has no sequence header")
        sequence_number, request_id = _SEQUENCE_HEADER.unpack_from(plain)
        chunk = MessageChunk.__new__(MessageChunk)  # its __init__ builds three headers, all replaced here
        fields: Any = chunk  # asyncua declares these attributes in __init__ only
        fields.MessageHeader = header
        fields.SecurityHeader = security_header
        fields.SequenceHeader = ua.SequenceHeader(SequenceNumber=sequence_number, RequestId=request_id)
        fields.Body = bytes(plain[_SEQUENCE_HEADER.size :])
        fields.crypto = crypto
        return chunk

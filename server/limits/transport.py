"""Limits on the wire: asyncua's transport limits (message size, chunk count) from `[limits]`, and a connection
protocol that refuses an oversized chunk as soon as its header is in.

asyncua buffers a whole chunk (up to 4 GiB) and checks its size only afterwards; `GuardedBinaryServer` creates
connections whose protocol refuses a chunk whose header declares more bytes than `max_chunk_size` *before*
buffering it, answering BadTcpMessageTooLarge as OPC UA Part 6 says.

asyncua internals: OPCUAProtocol subclass (data_received, _buffer), BinaryServer._make_protocol, uatcp_to_binary
"""

from __future__ import annotations

import asyncio
import logging

from asyncua import ua
from asyncua.common.connection import TransportLimits
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.ua.ua_binary import uatcp_to_binary

from qualitybridge.config import LimitsSettings
from qualitybridge.server.methods.arguments import status_code

# The package's name, as before it was split into modules: docs/configuration.md and log configurations name it.
_log = logging.getLogger("qualitybridge.server.limits")


def transport_limits(settings: LimitsSettings) -> TransportLimits:
    """asyncua's transport limits (checked per chunk and per message) from the configuration."""
    return TransportLimits(
        max_recv_buffer=settings.max_chunk_size,
        max_send_buffer=settings.max_chunk_size,
        max_chunk_count=settings.effective_max_chunk_count,
        max_message_size=settings.max_message_size,
    )


def _send_tcp_error(transport: asyncio.Transport, status: int, reason: str) -> None:
    error = ua.ErrorMessage(status_code(status), ua.String(reason))
    # asyncua annotates the message type as MessageType, whose members are the bytes it actually wants.
    transport.write(uatcp_to_binary(ua.MessageType.Error, error))  # type: ignore[arg-type]


class _ChunkSizeGuardProtocol(OPCUAProtocol):
    """asyncua's connection protocol, refusing a chunk whose header declares more than the chunk size limit.

    asyncua collects all bytes a header announces (up to 4 GiB, re-copying the buffer on every read) before the
    size is checked; here the header is checked as soon as its first eight bytes are in.
    """

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # What is left in the buffer is the start of a chunk still incomplete: type (3), chunk type (1), size (4).
        if len(self._buffer) < 8 or self.transport is None:
            return
        declared = int.from_bytes(self._buffer[4:8], "little")
        if declared <= self.limits.max_recv_buffer:
            return
        _log.warning(
            "Closing connection from %s: chunk of %d bytes announced, max_chunk_size is %d",
            self.peer_name,
            declared,
            self.limits.max_recv_buffer,
        )
        self._buffer = b""
        _send_tcp_error(
            self.transport,
            ua.StatusCodes.BadTcpMessageTooLarge,
            f"chunk of {declared} bytes exceeds the limit of {self.limits.max_recv_buffer}",
        )
        self.transport.close()


class GuardedBinaryServer(BinaryServer):
    """asyncua's binary server, creating connections with the chunk size guard."""

    def _make_protocol(self) -> OPCUAProtocol:
        return _ChunkSizeGuardProtocol(
            iserver=self.iserver,
            policies=self._policies,
            clients=self.clients,
            closing_tasks=self.closing_tasks,
            limits=self.limits,
        )

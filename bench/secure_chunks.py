"""CPU per message of a secure channel's symmetric chunks: asyncua's own `SecureConnection` (the baseline) beside the
server's `FastSymmetricConnection` (server/security/symmetric_chunks.py), in one run.

Two ends of a channel with real keys (two 2048-bit certificates, keys derived as OpenSecureChannel derives them);
each message is written by one end and read by the other, as a request and its response cross the server. Printed
per message size: µs to write (`message_to_binary`) and to read (`receive_from_header_and_body`), the two sides
taking turns so that a drifting machine affects both alike.

    .venv/bin/python bench/secure_chunks.py                       # Basic256Sha256 SignAndEncrypt, 200 and 600 bytes
    .venv/bin/python bench/secure_chunks.py --policy Aes256Sha256RsaPss --mode Sign --sizes 100 2000 20000

Figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.connection import SecureConnection, TransportLimits
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import header_from_binary

from qualitybridge.server.security.block_ciphers import install_fast_block_ciphers
from qualitybridge.server.security.message_signatures import install_fast_message_signatures
from qualitybridge.server.security.symmetric_chunks import FastSymmetricConnection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's root: tests/ holds the test PKI

from tests.pki_helpers import TestCa
from tests.secure_channel import MODES, SECURE_POLICIES, keyed_policies

CHUNK_SIZE = 65536


def _certificates() -> list[tuple[Any, Any]]:
    """A client's and a server's certificate and key, issued by one CA (as a plant's PKI does)."""
    authority = TestCa.create("Secure chunks bench CA")
    issued = [authority.issue(name, f"urn:qualitybridge:bench:{name}") for name in ("client", "server")]
    return [(certificate.certificate, certificate.key) for certificate in issued]


def _channel(policy: str, mode: str, connection_class: type[SecureConnection]) -> tuple[SecureConnection, ...]:
    writer_policy, reader_policy = keyed_policies(policy, mode, *_certificates(), receivers=1)
    ends = []
    for end_policy in (writer_policy, reader_policy):
        end = connection_class(end_policy, TransportLimits(CHUNK_SIZE, CHUNK_SIZE, 0, 0))
        end.security_token.ChannelId, end.security_token.TokenId = 1, 1
        ends.append(end)
    return tuple(ends)


def _measure(writer: SecureConnection, reader: SecureConnection, size: int, messages: int) -> tuple[float, float]:
    """µs per message to write and to read."""
    body = os.urandom(size)
    written = read = 0.0
    for request_id in range(1, messages + 1):
        started = time.perf_counter()
        data = writer.message_to_binary(body, ua.MessageType.SecureMessage, request_id)
        middle = time.perf_counter()
        buffer = Buffer(data)
        while len(buffer):
            reader.receive_from_header_and_body(header_from_binary(buffer), buffer)
        read += time.perf_counter() - middle
        written += middle - started
    return written / messages * 1e6, read / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", choices=sorted(SECURE_POLICIES), default="Basic256Sha256")
    parser.add_argument("--mode", choices=sorted(MODES), default="SignAndEncrypt")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 600], help="message body sizes in bytes")
    parser.add_argument("--messages", type=int, default=5000, help="messages per size and side and turn")
    parser.add_argument("--turns", type=int, default=3, help="the two sides take turns this many times")
    arguments = parser.parse_args()
    install_fast_message_signatures()  # as the server does: both sides sign with the same HMAC
    install_fast_block_ciphers()  # and encrypt through kept contexts
    sides = {
        "asyncua SecureConnection": _channel(arguments.policy, arguments.mode, SecureConnection),
        "FastSymmetricConnection": _channel(arguments.policy, arguments.mode, FastSymmetricConnection),
    }
    print(f"{arguments.policy} {arguments.mode}, {arguments.messages} messages x {arguments.turns} turns per figure")
    print(f"{'body bytes':>10}  {'side':26} {'write µs':>9} {'read µs':>8} {'both µs':>8}")
    for size in arguments.sizes:
        totals = {name: [0.0, 0.0] for name in sides}
        for _turn in range(arguments.turns):
            for name, (writer, reader) in sides.items():
                _measure(writer, reader, size, arguments.messages // 10)  # warm up
                written, read = _measure(writer, reader, size, arguments.messages)
                totals[name][0] += written / arguments.turns
                totals[name][1] += read / arguments.turns
        for name, (written, read) in totals.items():
            print(f"{size:>10}  {name:26} {written:9.1f} {read:8.1f} {written + read:8.1f}")


if __name__ == "__main__":
    main()

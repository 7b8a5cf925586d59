"""The standard address space (namespace 0) from a cache file, each node decoded when a service first reaches it.

asyncua fills the standard address space at every start by running its generated code (about 6,200 nodes, 1.6-1.8 s
of CPU, 4.4 s under coverage's tracer), although what it fills never changes for one asyncua version. The first
start fills it as asyncua does and stores every node as a pickle of its own; later starts read that file (18 MB,
0.04-0.09 s with its digest check) and give it to the node dict (`node_dict.NodesOnDemand`) as a provider, which
decodes a node (0.1-0.4 ms, most of it the garbage collector's) the first time a service asks for it. What asyncua
changes after the fill (`_address_space_fixes`, the namespace array, server status, build info, capabilities) is
applied by asyncua's own code as before, on the nodes it touches, which are made then.

The file is keyed by the asyncua version, the Python version (pickle of asyncua's classes) and `FORMAT_VERSION`,
and carries a digest of its contents. A missing, corrupt or foreign file, or a folder that cannot be written,
costs one log line and a normal fill, never a failed start. A file another user owns or may write is never loaded
(unpickling it would run their code); the folder is made private (0700) when this module creates it. The folder:
`$QUALITYBRIDGE_CACHE_DIR`, else `$XDG_CACHE_HOME/qualitybridge`, else `~/.cache/qualitybridge` (docs/operations.md).

asyncua internals: NodeData, AttributeValue (pickled as they are), InternalServer.load_standard_address_space.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from asyncua import ua
from asyncua.server.address_space import NodeData

__all__ = ["CACHE_DIR_ENV", "FORMAT_VERSION", "StandardNodeCache", "StandardNodes", "default_cache_dir"]

_log = logging.getLogger(__name__)

CACHE_DIR_ENV = "QUALITYBRIDGE_CACHE_DIR"
# Raise when what is stored per node changes; a file of another format is then ignored and replaced.
FORMAT_VERSION = 1
_MAGIC = b"qualitybridge standard nodes\n"
_DIGEST_SIZE = 32


def default_cache_dir() -> Path:
    """Where the cache lives unless told: `$QUALITYBRIDGE_CACHE_DIR`, `$XDG_CACHE_HOME/qualitybridge`, or
    `~/.cache/qualitybridge`."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "qualitybridge"


class StandardNodes:
    """A node provider (node_dict.NodeProvider) for namespace 0: encoded nodes, decoded on first access.

    A node leaves `_encoded` when it is made, replaced or deleted, so it is never made twice and a deleted node
    does not come back.
    """

    def __init__(self, encoded: dict[int, bytes], referrers: dict[int, tuple[int, ...]]) -> None:
        self._encoded = encoded
        self._referrers = referrers

    def __len__(self) -> int:
        """Nodes not decoded yet."""
        return len(self._encoded)

    def provides(self, node_id: ua.NodeId) -> bool:
        return _standard(node_id) in self._encoded

    def make(self, node_id: ua.NodeId) -> NodeData | None:
        encoded = self._encoded.pop(_standard(node_id), None)
        if encoded is None:
            return None
        node: NodeData = pickle.loads(encoded)  # noqa: S301 - our own file, written by _encode, checked by digest
        return node

    def pending(self) -> list[ua.NodeId]:
        return [ua.NodeId(ua.Int32(identifier)) for identifier in self._encoded]

    def referrers(self, node_id: ua.NodeId) -> list[ua.NodeId]:
        sources = self._referrers.get(_standard(node_id), ())
        return [ua.NodeId(ua.Int32(source)) for source in sources if source in self._encoded]

    def placed(self, node_id: ua.NodeId) -> None:
        self._encoded.pop(_standard(node_id), None)

    def removed(self, node_id: ua.NodeId) -> bool:
        return self._encoded.pop(_standard(node_id), None) is not None


def _standard(node_id: ua.NodeId) -> int:
    """The key of a namespace-0 numeric NodeId in the cache; -1 (never a key) for any other."""
    identifier = node_id.Identifier
    return identifier if node_id.NamespaceIndex == 0 and isinstance(identifier, int) else -1


@dataclass(frozen=True)
class StandardNodeCache:
    """The cache file of the standard address space in `directory`, for this asyncua and Python."""

    directory: Path

    @property
    def path(self) -> Path:
        python = f"{sys.implementation.name}{sys.version_info.major}{sys.version_info.minor}"
        return self.directory / f"standard-nodes-asyncua{version('asyncua')}-{python}-v{FORMAT_VERSION}.bin"

    def load(self) -> StandardNodes | None:
        """The stored nodes, or None (with one log line) when there is no usable file."""
        path = self.path
        try:
            with path.open("rb") as file:
                # Judged on the opened file itself, so that a file swapped in after the check is not the one read.
                distrust = _distrust(os.fstat(file.fileno()))
                content = b"" if distrust else file.read()
        except (FileNotFoundError, NotADirectoryError):
            _log.info("no standard address space cache at %s yet: filling it and storing it there", path)
            return None
        except OSError as exc:
            _log.warning("standard address space cache %s unreadable (%s): filling it as asyncua does", path, exc)
            return None
        if distrust:
            _log.warning("standard address space cache %s ignored: %s; filling it as asyncua does", path, distrust)
            return None
        try:
            return _decode(content)
        except Exception as exc:  # whatever is wrong with the file, the start goes on without it
            _log.warning("standard address space cache %s unusable (%s): filling it again", path, exc)
            return None

    def store(self, nodes: Mapping[ua.NodeId, NodeData]) -> bool:
        """Write the nodes as the cache, atomically (a reader sees the old file or the new one, never half a file);
        answers whether it was written. A folder that cannot be written costs one log line."""
        path = self.path
        try:
            content = _encode(nodes)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(content)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except Exception as exc:  # a cache that cannot be written is only a slower next start
            _log.warning("could not store the standard address space cache at %s (%s); next start fills it", path, exc)
            return False
        _log.info("stored the standard address space cache at %s", path)
        return True


def _distrust(status: os.stat_result) -> str:
    """Why a cache file must not be loaded ("" if it may): it is a pickle, and unpickling runs code, so a file that
    another account wrote or could write would run that account's code in the server. The digest does not help
    there: anyone can compute it. The files this module writes are the process's own and private (mkstemp)."""
    if status.st_uid != os.geteuid():
        return f"owned by user id {status.st_uid}, not by this process's user ({os.geteuid()})"
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by other users (mode {stat.S_IMODE(status.st_mode):o})"
    return ""


def _encode(nodes: Mapping[ua.NodeId, NodeData]) -> bytes:
    encoded: dict[int, bytes] = {}
    referrers: dict[int, list[int]] = {}
    for node_id, node in nodes.items():
        if node_id.NamespaceIndex != 0 or not isinstance(node_id.Identifier, int):
            raise ValueError(f"not a standard node: {node_id}")
        if node.call is not None:
            raise ValueError(f"standard node {node_id} has a method callback; it cannot be stored")
        encoded[node_id.Identifier] = pickle.dumps(node, pickle.HIGHEST_PROTOCOL)
        for reference in node.references:
            target = reference.NodeId
            if target.NamespaceIndex == 0 and isinstance(target.Identifier, int):
                referrers.setdefault(target.Identifier, []).append(node_id.Identifier)
    payload = pickle.dumps(
        (encoded, {target: tuple(sources) for target, sources in referrers.items()}), pickle.HIGHEST_PROTOCOL
    )
    return _MAGIC + hashlib.blake2b(payload, digest_size=_DIGEST_SIZE).digest() + payload


def _decode(content: bytes) -> StandardNodes:
    if not content.startswith(_MAGIC):
        raise ValueError("not a standard address space cache")
    digest = content[len(_MAGIC) : len(_MAGIC) + _DIGEST_SIZE]
    payload = content[len(_MAGIC) + _DIGEST_SIZE :]
    if hashlib.blake2b(payload, digest_size=_DIGEST_SIZE).digest() != digest:
        raise ValueError("digest mismatch (truncated or changed)")
    encoded, referrers = pickle.loads(payload)  # noqa: S301 - our own file, its digest checked above
    if not isinstance(encoded, dict) or not isinstance(referrers, dict):
        raise ValueError("unexpected contents")
    return StandardNodes(encoded, referrers)

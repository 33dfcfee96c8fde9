"""Asyncio TCP transport of length-prefixed frames (the I/O under :mod:`qrepeater.qkdpp.framing`).

:class:`FrameStream` reads and writes frames of the form ``length (u32, big-endian) | body``
on an ``asyncio`` stream pair. Every read has a timeout; a length above ``max_frame_bytes`` is
rejected before any of the body is read (a peer cannot make the node allocate more); a stream
that ends inside a frame is a truncated frame. All failures raise
:class:`~qrepeater.errors.TransportError`. Authentication is not done here: the bodies go to a
:class:`~qrepeater.qkdpp.framing.LinkCodec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from qrepeater.errors import ParameterError, TransportError

__all__ = ["FrameStream", "connect", "parse_address"]

_PREFIX = struct.Struct(">I")


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)`` (IPv6 as ``[::1]:7001``)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ParameterError(f"address must be host:port, got {text!r}")
    host = host.strip("[]")
    try:
        num = int(port)
    except ValueError:
        raise ParameterError(f"bad port in {text!r}") from None
    if not 0 <= num <= 65535:
        raise ParameterError(f"port out of range in {text!r}")
    return host, num


class FrameStream:
    """Length-prefixed frames over one TCP connection, with timeouts and a size limit."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_frame_bytes: int,
        timeout_s: float = 30.0,
    ) -> None:
        if max_frame_bytes < 1 or timeout_s <= 0:
            raise ParameterError("max_frame_bytes and timeout_s must be positive")
        self.reader = reader
        self.writer = writer
        self.max_frame_bytes = max_frame_bytes
        self.timeout_s = timeout_s
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def peer(self) -> str:
        info = self.writer.get_extra_info("peername")
        return f"{info[0]}:{info[1]}" if isinstance(info, tuple) else "?"

    async def send(self, frame: bytes) -> None:
        """Write one complete frame (length prefix included, as ``LinkCodec.seal`` makes it)."""
        try:
            self.writer.write(frame)
            await asyncio.wait_for(self.writer.drain(), self.timeout_s)
        except (OSError, ConnectionError) as exc:
            raise TransportError(f"connection lost while sending: {exc}") from None
        except TimeoutError:
            raise TransportError(f"peer did not read for {self.timeout_s:g} s") from None
        self.bytes_sent += len(frame)

    async def recv(self, *, timeout_s: float | None = None) -> bytes:
        """Read one frame body (without its length prefix)."""
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            head = await asyncio.wait_for(self.reader.readexactly(_PREFIX.size), limit)
            (length,) = _PREFIX.unpack(head)
            if length > self.max_frame_bytes:
                raise TransportError(
                    f"peer announced a frame of {length} bytes (limit {self.max_frame_bytes})"
                )
            body = await asyncio.wait_for(self.reader.readexactly(length), limit)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise TransportError("connection closed inside a frame (truncated)") from None
            raise TransportError("connection closed by peer") from None
        except TimeoutError:
            raise TransportError(f"no frame from peer within {limit:g} s") from None
        except (OSError, ConnectionError) as exc:
            raise TransportError(f"connection lost while receiving: {exc}") from None
        self.bytes_received += _PREFIX.size + len(body)
        return body

    async def close(self) -> None:
        """Close the connection (idempotent, never raises)."""
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)


async def connect(
    host: str, port: int, *, max_frame_bytes: int, timeout_s: float = 30.0
) -> FrameStream:
    """Open a TCP connection to ``host:port`` (within ``timeout_s``)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=1 << 20), timeout_s
        )
    except (OSError, TimeoutError) as exc:
        raise TransportError(f"cannot connect to {host}:{port}: {exc or 'timeout'}") from None
    return FrameStream(reader, writer, max_frame_bytes=max_frame_bytes, timeout_s=timeout_s)

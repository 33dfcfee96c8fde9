"""Authenticated framing (sans-IO codec) and the asyncio frame transport, on real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import struct
from pathlib import Path

import pytest

from qrepeater.errors import AuthenticationError, ParameterError, TransportError
from qrepeater.qkdpp.framing import (
    LINK_PARAMS,
    AuthPool,
    LinkCodec,
    PoolPosition,
    write_auth_key_pair,
)
from qrepeater.qkdpp.transport import FrameStream, connect, parse_address


@pytest.fixture
def pools(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "alice.auth", tmp_path / "bob.auth"
    write_auth_key_pair(64 * 1024, a, b)
    return a, b


def _codecs(pools: tuple[Path, Path], tmp: Path) -> tuple[LinkCodec, LinkCodec]:
    a, b = pools
    alice = LinkCodec("alice", AuthPool.load(a), PoolPosition(tmp / "alice.pos"))
    bob = LinkCodec("bob", AuthPool.load(b), PoolPosition(tmp / "bob.pos"))
    return alice, bob


def _body(frame: bytes) -> bytes:
    (n,) = struct.unpack(">I", frame[:4])
    assert n == len(frame) - 4
    return frame[4:]


def _handshake(alice: LinkCodec, bob: LinkCodec) -> None:
    m = alice.open(_body(bob.hello(b"hi")))
    assert (m.kind, m.payload) == ("link.hello", b"hi")
    m = bob.open(_body(alice.hello(b"yo")))
    assert m.payload == b"yo"
    assert alice.session == bob.session
    assert alice.session is not None


def test_auth_key_pair_files(tmp_path: Path, pools: tuple[Path, Path]) -> None:
    a, b = pools
    assert a.read_bytes() == b.read_bytes()
    assert len(a.read_bytes()) == 8 * 1024
    assert stat.S_IMODE(a.stat().st_mode) == 0o600
    assert stat.S_IMODE(b.stat().st_mode) == 0o600
    with pytest.raises(ParameterError):
        write_auth_key_pair(64 * 1024, a, tmp_path / "c.auth")  # never overwrite
    assert not (tmp_path / "c.auth").exists()
    with pytest.raises(ParameterError):
        write_auth_key_pair(100, tmp_path / "x", tmp_path / "y")
    os.chmod(a, 0o644)
    with pytest.raises(ParameterError):
        AuthPool.load(a)
    assert "<hidden>" in repr(AuthPool.load(b))


def test_roundtrip_and_accounting(tmp_path: Path, pools: tuple[Path, Path]) -> None:
    alice, bob = _codecs(pools, tmp_path)
    _handshake(alice, bob)
    for i in range(5):
        m = bob.open(_body(alice.seal("data", bytes([i]) * 10, bits=75)))
        assert (m.sender, m.kind, m.payload, m.bits) == ("alice", "data", bytes([i]) * 10, 75)
        m = alice.open(_body(bob.seal("ack", b"")))
        assert m.payload == b""
    assert alice.tags_sent == bob.tags_checked == 6
    assert alice.bits_consumed == 12 * LINK_PARAMS.tag_bits
    assert alice.position.send_next == 6
    assert bob.position.recv_next == 6
    # positions are made durable in blocks of 32: one write per direction so far
    assert alice.position.writes == 2
    assert json.loads((tmp_path / "alice.pos").read_text()) == {"send_next": 32, "recv_next": 32}


@pytest.mark.parametrize("attack", ["flip", "replay", "reorder", "drop", "truncate", "sender"])
def test_attacks_fail_the_link(tmp_path: Path, pools: tuple[Path, Path], attack: str) -> None:
    alice, bob = _codecs(pools, tmp_path)
    _handshake(alice, bob)
    f1 = _body(alice.seal("m", b"one"))
    f2 = _body(alice.seal("m", b"two"))
    bad: type[Exception] = AuthenticationError
    if attack == "flip":
        frame = f1[:-12] + bytes([f1[-12] ^ 1]) + f1[-11:]
    elif attack == "replay":
        bob.open(f1)
        frame = f1
    elif attack == "reorder":
        frame = f2
    elif attack == "drop":
        bob.open(f1)
        alice.seal("m", b"three")  # sealed but lost
        frame = _body(alice.seal("m", b"four"))
    elif attack == "truncate":
        frame = f1[:-1]
        bad = TransportError
    else:
        frame = bytes([f1[0], 1]) + f1[2:]  # claims to come from Bob himself
    with pytest.raises(bad):
        bob.open(frame)
    with pytest.raises(AuthenticationError):  # the link stays failed, even for a good frame
        bob.open(f1)


def test_positions_survive_restart_and_old_session_fails(
    tmp_path: Path, pools: tuple[Path, Path]
) -> None:
    alice, bob = _codecs(pools, tmp_path)
    _handshake(alice, bob)
    old = _body(alice.seal("m", b"old"))
    bob.open(old)
    recorded = _body(alice.seal("m", b"never delivered"))
    # restart both from their files: no pad index is reused
    alice2, bob2 = _codecs(pools, tmp_path)
    # a restarted site resumes from its durable mark (at or beyond where it stopped)
    assert alice2.position.send_next >= alice.position.send_next
    assert bob2.position.recv_next >= bob.position.recv_next
    assert alice2.position.send_next >= bob2.position.recv_next  # the sender is never behind
    _handshake(alice2, bob2)
    assert min(alice2.position.send_next, bob2.position.recv_next) > 3
    with pytest.raises(AuthenticationError):  # below the durable position
        bob2.open(old)
    _alice3, bob3 = _codecs(pools, tmp_path)
    bob3.hello(b"")
    with pytest.raises(AuthenticationError):  # a frame of an earlier session in a new one
        bob3.open(recorded)


def test_restart_of_one_side_only(tmp_path: Path, pools: tuple[Path, Path]) -> None:
    """Bob restarts (his receive mark jumps to the end of its block), Alice does not: her next
    session still gets through, because every session sends from the durable mark."""
    alice, bob = _codecs(pools, tmp_path)
    _handshake(alice, bob)
    for _ in range(3):
        bob.open(_body(alice.seal("m", b"x")))
    bob2 = LinkCodec("bob", AuthPool.load(pools[1]), PoolPosition(tmp_path / "bob.pos"))
    assert bob2.position.recv_next > alice.position.send_next  # restarted receiver is ahead
    alice_again = LinkCodec("alice", alice.pool, alice.position)  # same process, new session
    _handshake(alice_again, bob2)
    assert bob2.open(_body(alice_again.seal("m", b"y"))).payload == b"y"


def test_capacity_refusal(tmp_path: Path) -> None:
    a, b = tmp_path / "a.auth", tmp_path / "b.auth"
    write_auth_key_pair(8 * 1024, a, b)
    codec = LinkCodec("alice", AuthPool.load(a), PoolPosition(None))
    send, recv = codec.frames_left()
    assert send + recv == (8 * 1024 - 4 * 64) // 128
    codec.require_capacity(send=send, receive=recv)
    with pytest.raises(AuthenticationError, match="too small"):
        codec.require_capacity(send=send + 1, receive=0)


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:7001") == ("127.0.0.1", 7001)
    assert parse_address("[::1]:0") == ("::1", 0)
    for bad in ("nohost", ":1", "h:x", "h:70000"):
        with pytest.raises(ParameterError):
            parse_address(bad)


@pytest.mark.timeout(30)
def test_stream_limits_on_loopback() -> None:
    async def main() -> list[str]:
        seen: list[str] = []
        got: asyncio.Queue[str] = asyncio.Queue()

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            fs = FrameStream(r, w, max_frame_bytes=100, timeout_s=0.5)
            for _ in range(4):
                try:
                    body = await fs.recv()
                    await got.put(f"ok:{body.decode()}")
                except TransportError as exc:
                    await got.put(f"err:{exc}")
                    break
            await fs.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            # a good frame, then an oversized announcement (refused before the body is read)
            c = await connect("127.0.0.1", port, max_frame_bytes=1000, timeout_s=2)
            await c.send(struct.pack(">I", 2) + b"hi")
            seen.append(await got.get())
            await c.send(struct.pack(">I", 101) + b"x" * 101)
            seen.append(await got.get())
            await c.close()
            # a truncated frame
            c = await connect("127.0.0.1", port, max_frame_bytes=1000, timeout_s=2)
            await c.send(struct.pack(">I", 10) + b"abc")
            c.writer.write_eof()
            seen.append(await got.get())
            await c.close()
            # silence: the server's read times out
            c = await connect("127.0.0.1", port, max_frame_bytes=1000, timeout_s=2)
            seen.append(await got.get())
            await c.close()
        with pytest.raises(TransportError):
            await connect("127.0.0.1", port, max_frame_bytes=10, timeout_s=2)
        return seen

    seen = asyncio.run(main())
    assert seen[0] == "ok:hi"
    assert seen[1].startswith("err:")
    assert "101 bytes" in seen[1]
    assert "truncated" in seen[2]
    assert "within" in seen[3]


def test_forged_far_frame_does_not_burn_the_pool(tmp_path: Path, pools: tuple[Path, Path]) -> None:
    """An unauthenticated frame claiming a far sequence number fails and moves no position."""
    alice, bob = _codecs(pools, tmp_path)
    hello = bytearray(_body(bob.hello(b"")))
    # rewrite the sequence number (after version, sender, 16-byte session) to a far index
    hello[18:26] = (5_000).to_bytes(8, "big")
    with pytest.raises(AuthenticationError):
        alice.open(bytes(hello))
    assert alice.position.recv_next == 0
    assert not (tmp_path / "alice.pos").exists()
    assert alice.tags_checked == 1  # the attempt is counted

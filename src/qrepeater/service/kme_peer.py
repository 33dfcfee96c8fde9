"""The authenticated link between the two KMEs of a QKD link (request/response, crash-safe).

The two KMEs must agree which key ids were handed to which master and slave SAE before any SAE
sees a key. They talk over one TCP connection (the *leader* listens, the *follower* connects),
framed and authenticated exactly as the nodes' own link: :class:`~qrepeater.qkdpp.framing.
LinkCodec` (Wegman-Carter tags over :class:`~qrepeater.qkdpp.framing.AuthPool`, session ids
from fresh nonces, consecutive sequence numbers within a session) over a
:class:`~qrepeater.qkdpp.transport.FrameStream`. The leader is the codec's ``alice``, the
follower its ``bob`` (who greets first). The content is not secret (key ids and SAE names, never
key bytes), so the link authenticates but does not encrypt.

The KME link needs its **own** pre-shared auth key file: a pad must never authenticate two
links, so never give the KMEs the nodes' auth key.

What differs from the node link is where the pad positions live (:class:`LedgerPosition`): in
the KME ledger (SQLite, ``synchronous=FULL``), with send positions reserved durably in blocks of
:data:`COUNTER_BLOCK` *before* any of them is used. A restarted sender starts at the end of
its last block, so no pad is ever used twice whatever the moment of a crash; a crash costs at
most one block of unused pads. Receive positions are written at the same time (lazily): after
a crash a receiver may again accept sequence numbers it saw in an earlier session, but such
frames were authenticated with the old session id and fail, so the only effect is a forgery
*attempt*, bounded like any other by :attr:`~qrepeater.qkdpp.auth.AuthParams.forge_probability`
per attempt (with ``w = 2`` and 64 KiB frames, below ``2^-100``). Every request on this link is
idempotent under its request id, so even a replay would change nothing.

Pads are consumed at ``128`` bits per frame; a request costs one frame each way, so an auth key
of ``B`` bytes authenticates about ``B / 32`` requests. When they run out the link refuses to
send and the KMEs answer 503 (replenishing the pads from QKD key is not implemented).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from qrepeater.errors import AuthenticationError, ParameterError, TransportError
from qrepeater.qkdpp.auth import AuthParams
from qrepeater.qkdpp.framing import HELLO_KIND, AuthPool, LinkCodec, PoolPosition
from qrepeater.qkdpp.transport import FrameStream

__all__ = [
    "COUNTER_BLOCK",
    "KME_LINK_PARAMS",
    "CounterStore",
    "LedgerPosition",
    "PeerLink",
    "Role",
    "load_auth_pool",
]

log = logging.getLogger("qrepeater.kme.peer")

Role = Literal["leader", "follower"]
COUNTER_BLOCK = 64
"""Send positions reserved (durably) per ledger write: pads lost per restart at most."""
KME_LINK_PARAMS = AuthParams(tag_words=2, max_payload_bytes=1 << 16)
"""Two 64-bit words per tag; frames of at most 64 KiB (a request names at most a few thousand
key ids)."""
_REQ, _RESP = "kme.req", "kme.resp"
_PARTY: dict[Role, Literal["alice", "bob"]] = {"leader": "alice", "follower": "bob"}


def load_auth_pool(path: str | Path) -> AuthPool:
    """The KME link's pre-shared pool (mode 0600 file, see ``qrepeater kme auth-key``)."""
    return AuthPool.load(path, params=KME_LINK_PARAMS)


class CounterStore(Protocol):
    """Durable counters (the KME ledger implements it)."""

    def get_counter(self, name: str) -> int: ...

    def set_counter(self, name: str, value: int) -> None: ...


class LedgerPosition(PoolPosition):
    """Pad positions of the KME link, kept in the ledger with block reservation (module
    docstring). Same interface as :class:`~qrepeater.qkdpp.framing.PoolPosition`."""

    def __init__(self, counters: CounterStore) -> None:
        super().__init__(None)
        self._counters = counters
        self._send = counters.get_counter("send_hwm")
        self._recv = counters.get_counter("recv_floor")
        self._hwm = self._send

    def __repr__(self) -> str:
        return f"LedgerPosition(send_next={self._send}, recv_next={self._recv})"

    @property
    def send_next(self) -> int:
        return self._send

    @property
    def recv_next(self) -> int:
        return self._recv

    def claim_send(self) -> int:
        if self._send >= self._hwm:
            # durable before use: a restarted sender starts beyond every position it may have used
            self._hwm = self._send + COUNTER_BLOCK
            self._counters.set_counter("send_hwm", self._hwm)
            self._counters.set_counter("recv_floor", self._recv)
        index = self._send
        self._send += 1
        return index

    def consume_recv(self, index: int) -> None:
        if index < self._recv:
            raise AuthenticationError(f"receive index {index} was already used")
        self._recv = index + 1

    def flush(self) -> None:
        """Record the receive position now (clean shutdown)."""
        self._counters.set_counter("recv_floor", self._recv)


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class _Session:
    """One authenticated connection: its codec, its stream, and the requests sent on it."""

    def __init__(self, codec: LinkCodec, stream: FrameStream) -> None:
        self.codec = codec
        self.stream = stream
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def recv(self) -> tuple[str, dict[str, Any]]:
        msg = self.codec.open(await self.stream.recv(timeout_s=3600.0))
        try:
            obj = json.loads(msg.payload)
        except ValueError:
            raise TransportError("KME link frame is not JSON") from None
        if not isinstance(obj, dict):
            raise TransportError("KME link frame is not a JSON object")
        return msg.kind, obj

    def fail_pending(self) -> None:
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(TransportError("KME link lost"))
        self.pending.clear()


class PeerLink:
    """One KME's end of the authenticated link: request/response over framed JSON.

    ``handler`` answers the peer's requests (idempotent per request id);
    :meth:`request` sends one and waits for its answer. ``on_connect`` runs (as a task) after
    each authenticated (re)connection: the KME uses it to finish requests that a crash or a
    broken connection left half done.

    All frames leave through one lock and only on the *current* session, so the sequence
    numbers of a session are consecutive even while a reconnection replaces an old one.
    """

    def __init__(
        self,
        *,
        role: Role,
        pool: AuthPool,
        counters: CounterStore,
        handler: Handler,
        kme_id: str,
        on_connect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if role not in _PARTY:
            raise ParameterError(f"role must be 'leader' or 'follower', got {role!r}")
        self.role: Role = role
        self.pool = pool
        self.position = LedgerPosition(counters)
        self._handler = handler
        self.kme_id = kme_id
        self.peer_kme_id: str | None = None
        self._on_connect = on_connect
        self._session: _Session | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connected = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._closing = False
        self._send_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PeerLink(role={self.role!r}, connected={self.connected.is_set()})"

    @property
    def frames_left(self) -> int:
        """Frames this end can still send."""
        direction: Literal["alice->bob", "bob->alice"] = (
            "alice->bob" if self.role == "leader" else "bob->alice"
        )
        return max(0, self.pool.slots(direction) - self.position.send_next)

    def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> FrameStream:
        limit = KME_LINK_PARAMS.max_payload_bytes + 512
        return FrameStream(reader, writer, max_frame_bytes=limit, timeout_s=30.0)

    async def _send(self, session: _Session, kind: str, obj: dict[str, Any]) -> None:
        payload = json.dumps(obj, separators=(",", ":")).encode()
        async with self._send_lock:
            if session is not self._session:
                raise TransportError("KME link: the connection was replaced")
            try:
                frame = session.codec.seal(kind, payload)
            except ParameterError as exc:
                raise TransportError(f"KME link: {exc}") from None
            await session.stream.send(frame)

    # ---- connection management ------------------------------------------------------------------
    async def _handshake(self, stream: FrameStream) -> _Session:
        """Greet, authenticate the peer's greeting, and make the new session the current one."""
        codec = LinkCodec(_PARTY[self.role], self.pool, self.position)
        hello = json.dumps({"kme_id": self.kme_id, "role": self.role}).encode()
        # The follower (bob) greets first; the leader answers only an authenticated greeting.
        if self.role == "follower":
            async with self._send_lock:
                await stream.send(codec.hello(hello))
        msg = codec.open(await stream.recv(timeout_s=10.0))
        if msg.kind != HELLO_KIND:
            raise TransportError("KME link: expected a greeting")
        try:
            peer = json.loads(msg.payload)
        except ValueError:
            raise TransportError("KME link: malformed greeting") from None
        if not isinstance(peer, dict) or peer.get("role") == self.role:
            raise TransportError("KME link: both ends claim the same role")
        session = _Session(codec, stream)
        async with self._send_lock:
            if self.role == "leader":
                await stream.send(codec.hello(hello))
            old, self._session = self._session, session
        self.peer_kme_id = str(peer.get("kme_id"))
        if old is not None:
            old.fail_pending()
            await old.stream.close()
        self.connected.set()
        log.info("KME link up (peer %s)", self.peer_kme_id)
        if self._on_connect is not None:
            self._spawn(self._on_connect())
        return session

    async def _serve(self, session: _Session) -> None:
        try:
            while True:
                kind, obj = await session.recv()
                if kind == _REQ:
                    self._spawn(self._answer(session, obj))
                elif kind == _RESP:
                    fut = session.pending.pop(int(obj.get("id", -1)), None)
                    if fut is not None and not fut.done():
                        fut.set_result(obj)
        except (TransportError, AuthenticationError) as exc:
            if not self._closing:
                log.warning("KME link down: %s", exc)
        finally:
            await session.stream.close()
            session.fail_pending()
            if self._session is session:
                self._session = None
                self.connected.clear()

    async def _answer(self, session: _Session, msg: dict[str, Any]) -> None:
        try:
            body = await self._handler(msg)
        except Exception as exc:  # the peer gets an error answer, never a hang
            log.exception("KME link request failed")
            body = {"ok": False, "status": 503, "message": f"peer error: {type(exc).__name__}"}
        with contextlib.suppress(TransportError, AuthenticationError):
            await self._send(session, _RESP, {**body, "id": msg.get("id")})

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def listen(self, host: str, port: int) -> int:
        """Leader: accept the follower's connections; returns the bound port."""

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream = self._stream(reader, writer)
            try:
                session = await self._handshake(stream)
            except (TransportError, AuthenticationError) as exc:
                log.warning("KME link: refused a connection: %s", exc)
                await stream.close()
                return
            await self._serve(session)

        self._server = await asyncio.start_server(accept, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def connect_forever(self, host: str, port: int) -> None:
        """Follower: keep a connection to the leader up (reconnect with backoff)."""
        delay = 0.05
        while not self._closing:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(1.0, 2 * delay)
                continue
            stream = self._stream(reader, writer)
            try:
                session = await self._handshake(stream)
            except (TransportError, AuthenticationError) as exc:
                log.warning("KME link: handshake failed: %s", exc)
                await stream.close()
                await asyncio.sleep(delay)
                delay = min(1.0, 2 * delay)
                continue
            delay = 0.05
            await self._serve(session)

    async def request(self, body: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """Send a request to the peer and wait for its answer (TransportError if none)."""
        session = self._session
        if session is None:
            raise TransportError("peer KME not connected")
        corr = secrets.randbits(62)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        session.pending[corr] = fut
        try:
            await self._send(session, _REQ, {**body, "id": corr})
            return await asyncio.wait_for(fut, timeout=timeout)
        except TimeoutError:
            raise TransportError("peer KME did not answer in time") from None
        finally:
            session.pending.pop(corr, None)

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._session is not None:
            await self._session.stream.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            self.position.flush()

"""A networked DI-QKD node: one party, its own records, its auth pool copy and its key store.

Two processes, one per lab, each holding only its own round record and its copy of the
pre-shared authentication pool: Alice listens, Bob connects (asyncio TCP,
:mod:`qrepeater.qkdpp.transport`); every frame is authenticated
(:mod:`qrepeater.qkdpp.framing`: Wegman-Carter tags, per-direction sequence numbers bound to
durably stored pad positions, a session id from both sides' nonces). The post-processing is
done by the very same sans-IO :class:`~qrepeater.diqkd.parties.Alice` /
:class:`~qrepeater.diqkd.parties.Bob` objects as the in-process driver; the node only moves
their messages and keeps the store.

**Blocks.** The record is processed in blocks of ``block_rounds`` rounds (default: the whole
record); block ``b`` is distilled with seed :func:`~qrepeater.diqkd.parties.block_seed` when a
seed is given (tests), so a node pair and the in-process driver give the same keys.

**Both or neither.** Each block ends committed in both stores or in neither:

1. before sending any message of block ``b``, each node records it as *open*
   (:meth:`~qrepeater.qkdpp.keystore.KeyStore.open_block`), so it is never run twice;
2. when the parties finish, Bob *stages* the key (pending) and sends ``node.ready``; Alice, who
   has staged hers, *commits* on ``node.ready`` (this is the decision point) and sends
   ``node.commit``; Bob commits on receipt;
3. every session starts with a hello from each side listing its pending blocks; Alice answers
   which of Bob's pending blocks she has committed. Bob commits those and discards his other
   pending blocks; Alice discards her own pending ones (she never committed them, so Bob never
   did either). Open blocks are discarded (aborted) on both sides;
4. the next block is one past the highest block either store has seen, so a block whose public
   messages may have gone out is never distilled again (that would leak more than the bound
   counted). A dropped connection therefore costs the block in flight and nothing else.

A failed frame (tampered, replayed, reordered, dropped, truncated, oversized) or a protocol
abort ends the block on the side that sees it, which sends ``node.abort`` (best effort) and
closes the connection; the peer aborts on that message, on the closed connection or on its
read timeout. Bob reconnects and the nodes go on with the next block.

**Authentication budget.** Before each block a node checks that its pool can authenticate the
largest number of frames a block may need (:func:`~qrepeater.diqkd.parties.max_messages` plus
the node's own frames) in each direction, and refuses the block otherwise
(:class:`~qrepeater.errors.AuthenticationError`, exit status 3 from the CLI). Pool bits
consumed are in every block report (``auth_bits``).

Reports and logs carry public figures only, never key bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qrepeater.diqkd.parties import (
    Alice,
    Bob,
    DistillConfig,
    ProtocolParty,
    block_seed,
    max_messages,
    slice_rounds,
)
from qrepeater.diqkd.records import read_party_record
from qrepeater.errors import (
    AuthenticationError,
    ParameterError,
    ProtocolAbort,
    QRepeaterError,
    TransportError,
)
from qrepeater.qkdpp.channel import Message, Party
from qrepeater.qkdpp.framing import HELLO_KIND, LINK_PARAMS, AuthPool, LinkCodec, PoolPosition
from qrepeater.qkdpp.keystore import KeyStore
from qrepeater.qkdpp.transport import FrameStream, connect

__all__ = ["BlockReport", "Node", "NodeConfig", "NodeSummary", "run_node"]

log = logging.getLogger("qrepeater.node")

_ABORT = "node.abort"
_READY = "node.ready"
_COMMIT = "node.commit"
_BYE = "node.bye"
_NODE_FRAMES = 3  # node.ready / node.commit / node.abort per block and direction, at most


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs; validated on construction.

    ``listen`` (Alice) or ``connect`` (Bob) is ``(host, port)``; ``position`` defaults to the
    auth key's path with ``.pos`` appended; ``timeout_s`` bounds every read of a frame;
    ``retry_for_s``: how long Bob keeps reconnecting (and Alice waits for a connection once
    her store has nothing unresolved) before giving up; ``seed`` (tests only) makes the public
    random choices reproducible; ``warm_up``: load the decoder before the first block.
    """

    party: Party
    records: Path
    store: Path
    auth_key: Path
    listen: tuple[str, int] | None = None
    connect: tuple[str, int] | None = None
    position: Path | None = None
    block_rounds: int | None = None
    distill: DistillConfig = field(default_factory=DistillConfig)
    seed: int | None = None
    timeout_s: float = 120.0
    retry_for_s: float = 600.0
    unit_bits: int = 256
    warm_up: bool = True

    def __post_init__(self) -> None:
        if self.party not in ("alice", "bob"):
            raise ParameterError(f"party must be alice or bob, got {self.party!r}")
        if self.party == "alice" and (self.listen is None or self.connect is not None):
            raise ParameterError("Alice listens: give --listen host:port (and no --connect)")
        if self.party == "bob" and (self.connect is None or self.listen is not None):
            raise ParameterError("Bob connects: give --connect host:port (and no --listen)")
        if self.block_rounds is not None and self.block_rounds < 1:
            raise ParameterError("block_rounds must be positive")
        if self.seed is not None and self.seed < 0:
            raise ParameterError("seed must be non-negative")
        if not self.timeout_s > 0 or not self.retry_for_s >= 0:
            raise ParameterError("timeout_s must be positive and retry_for_s non-negative")

    @property
    def position_path(self) -> Path:
        return self.position or self.auth_key.with_name(self.auth_key.name + ".pos")


@dataclass(frozen=True)
class BlockReport:
    """Public outcome of one block on one node (never key bytes)."""

    block: int
    state: Literal["committed", "aborted", "pending"]
    abort_reason: str | None
    secret_bits: int
    keys: int
    auth_bits: int
    eps_auth: float
    opened_at: float
    finished_at: float | None
    committed_at: float | None
    report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class NodeSummary:
    """What a node did in this process (JSON for ``--json``)."""

    party: Party
    run_id: str
    n_blocks: int
    blocks: list[BlockReport] = field(default_factory=list)
    resolved: dict[str, list[int]] = field(default_factory=dict)
    sessions: int = 0
    auth_bits: int = 0
    done: bool = False
    listen_port: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "party": self.party,
            "run_id": self.run_id,
            "n_blocks": self.n_blocks,
            "done": self.done,
            "sessions": self.sessions,
            "auth_bits": self.auth_bits,
            "committed": sum(b.state == "committed" for b in self.blocks),
            "aborted": sum(b.state == "aborted" for b in self.blocks),
            "keys": sum(b.keys for b in self.blocks),
            "secret_bits": sum(b.secret_bits for b in self.blocks),
            "resolved": self.resolved,
            "blocks": [b.to_dict() for b in self.blocks],
        }


class _SessionEnd(Exception):  # noqa: N818 - control flow inside a session
    """The session is over (link failed or block aborted): close and reconnect."""


class _Session:
    """One TCP connection: hello exchange, resolution, then blocks until done or failure."""

    def __init__(self, node: Node, stream: FrameStream) -> None:
        self.node = node
        self.stream = stream
        self.codec = LinkCodec(node.cfg.party, node.pool, node.position)

    async def send(self, kind: str, payload: bytes = b"", *, bits: int | None = None) -> None:
        frame = self.codec.seal(kind, payload, bits=bits)
        log.debug("frame sent seq=%d kind=%s", self.codec.position.send_next - 1, kind)
        await self.stream.send(frame)

    async def recv(self, *, timeout_s: float | None = None) -> Message:
        body = await self.stream.recv(timeout_s=timeout_s)
        before = self.codec.position.recv_next
        try:
            msg = self.codec.open(body)
        finally:
            if self.codec.position.recv_next != before:  # a pad was used (passed or not)
                log.debug("frame checked seq=%d", self.codec.position.recv_next - 1)
        return msg

    async def send_json(self, kind: str, obj: dict[str, Any]) -> None:
        await self.send(kind, json.dumps(obj, sort_keys=True).encode())

    @staticmethod
    def parse(msg: Message) -> dict[str, Any]:
        try:
            obj = json.loads(msg.payload)
        except ValueError:
            raise ProtocolAbort("protocol", f"malformed '{msg.kind}' message") from None
        if not isinstance(obj, dict):
            raise ProtocolAbort("protocol", f"malformed '{msg.kind}' message")
        return obj

    # ---- hello and resolution -------------------------------------------------------------------
    async def handshake(self) -> int:
        """Exchange hellos, resolve pending blocks; returns the next block to run."""
        node = self.node
        mine = node.store_view()
        if node.cfg.party == "bob":
            await self.stream.send(self.codec.hello(json.dumps(mine).encode()))
            log.debug("frame sent seq=%d kind=hello", self.codec.position.send_next - 1)
            peer = self.parse(await self.recv())
            node.check_peer(peer)
            node.resolve_bob(peer)
        else:
            first = await self.recv()
            if first.kind != HELLO_KIND:  # pragma: no cover - the codec enforces it
                raise ProtocolAbort("protocol", "expected a hello")
            peer = self.parse(first)
            node.check_peer(peer)
            committed = node.resolve_alice(peer)
            mine = node.store_view()
            mine["committed"] = committed
            await self.stream.send(self.codec.hello(json.dumps(mine).encode()))
            log.debug("frame sent seq=%d kind=hello", self.codec.position.send_next - 1)
        nxt = max(int(peer["high"]), int(mine["high"])) + 1
        node.mark_skipped(min(nxt, node.n_blocks))
        return nxt

    # ---- blocks ---------------------------------------------------------------------------------
    async def run(self) -> bool:
        """Run the session; True when every block is resolved (the node is done)."""
        node = self.node
        nxt = await self.handshake()
        while nxt < node.n_blocks:
            await self.block(nxt)
            nxt += 1
        if node.cfg.party == "bob":
            await self.send_json(_BYE, {"next": nxt})
            with contextlib.suppress(QRepeaterError):  # the answer is a courtesy
                await self.recv(timeout_s=min(5.0, node.cfg.timeout_s))
        else:
            msg = await self.recv()
            if msg.kind != _BYE:
                raise ProtocolAbort("protocol", f"expected '{_BYE}', got '{msg.kind}'")
            await self.send_json(_BYE, {"next": nxt})
        return True

    async def block(self, b: int) -> None:
        node = self.node
        cfg = node.cfg
        own, peer_bound = max_messages(cfg.distill)
        if cfg.party == "bob":
            own, peer_bound = peer_bound, own
        try:
            self.codec.require_capacity(send=own + _NODE_FRAMES, receive=peer_bound + _NODE_FRAMES)
        except AuthenticationError as exc:
            with contextlib.suppress(QRepeaterError):
                await self.send_json(_ABORT, {"block": b, "reason": "auth_pool"})
            raise PoolExhaustedError(str(exc)) from None
        run_id = node.meta.run_id
        opened = time.time()
        node.store.open_block(run_id=run_id, block=b, meta={"opened_at": opened})
        bits0 = self.codec.bits_consumed
        node.checks0 = self.codec.tags_checked
        node.codec = self.codec
        start = b * node.block_rounds
        rounds = slice_rounds(node.rounds, start, min(start + node.block_rounds, node.n_rounds))
        seed = None if cfg.seed is None else block_seed(cfg.seed, b)
        cls = Alice if cfg.party == "alice" else Bob
        party: ProtocolParty = cls(rounds, node.meta, config=cfg.distill, seed=seed)
        log.info("block %d: started (%d rounds)", b, len(rounds))
        try:
            await self.exchange(party)
        except (QRepeaterError, asyncio.CancelledError) as exc:
            reason = getattr(exc, "reason", type(exc).__name__)
            party.abort(str(reason), str(exc))
            node.end_block(b, party, opened, self.codec.bits_consumed - bits0, None)
            if not isinstance(exc, asyncio.CancelledError) and self.codec.failed is None:
                with contextlib.suppress(QRepeaterError):
                    await self.send_json(_ABORT, {"block": b, "reason": str(reason)})
            raise
        outcome = party.outcome
        assert outcome is not None
        if outcome.aborted or outcome.key is None:
            node.end_block(b, party, opened, self.codec.bits_consumed - bits0, None)
            if outcome.abort_reason != "peer_abort":
                with contextlib.suppress(QRepeaterError):
                    await self.send_json(
                        _ABORT, {"block": b, "reason": outcome.abort_reason or "?"}
                    )
            raise _SessionEnd(f"block {b} aborted ({outcome.abort_reason})")
        finished = time.time()
        key = outcome.key
        n = key.size - key.size % 8
        key_bytes = np.packbits(key[:n]).tobytes()
        meta = {
            "secret_bits": int(key.size),
            "auth_bits": self.codec.bits_consumed - bits0,
            "chsh": outcome.public.get("chsh"),
            "leak_bits": outcome.public.get("leak_bits"),
        }
        try:
            if cfg.party == "bob":
                node.store.stage_block(run_id=run_id, block=b, key=key_bytes, meta=meta)
                await self.send_json(_READY, {"block": b})
                msg = await self.recv()
                self.expect(msg, _COMMIT, b)
                n_keys = node.store.commit_block(run_id=run_id, block=b)
            else:
                node.store.stage_block(run_id=run_id, block=b, key=key_bytes, meta=meta)
                msg = await self.recv()
                self.expect(msg, _READY, b)
                n_keys = node.store.commit_block(run_id=run_id, block=b)
                await self.send_json(_COMMIT, {"block": b})
        except (QRepeaterError, asyncio.CancelledError):
            node.end_block(b, party, opened, self.codec.bits_consumed - bits0, finished)
            raise
        node.end_block(b, party, opened, self.codec.bits_consumed - bits0, finished, n_keys=n_keys)

    def expect(self, msg: Message, kind: str, b: int) -> None:
        if msg.kind == _ABORT:
            self.peer_aborted(msg)
            raise ProtocolAbort("peer_abort", f"peer aborted block {b}")
        if msg.kind != kind or self.parse(msg).get("block") != b:
            raise ProtocolAbort("protocol", f"expected '{kind}' for block {b}, got '{msg.kind}'")

    def peer_aborted(self, msg: Message) -> str:
        reason = str(self.parse(msg).get("reason", "?"))
        if reason == "auth_pool":
            raise PoolExhaustedError("the peer's authentication pool cannot authenticate a block")
        return reason

    async def exchange(self, party: ProtocolParty) -> None:
        for m in party.start():
            await self.send(m.kind, m.payload, bits=m.bits)
        while not party.done:
            msg = await self.recv()
            if msg.kind == _ABORT:
                reason = self.peer_aborted(msg)
                party.abort("peer_abort", f"peer aborted the block ({reason})")
                return
            out = await asyncio.to_thread(party.receive, msg)
            for m in out:
                await self.send(m.kind, m.payload, bits=m.bits)


class Node:
    """One party's node; :meth:`run` serves (Alice) or connects (Bob) until every block of the
    record is resolved. See the module docstring."""

    def __init__(self, cfg: NodeConfig, *, on_listen: Callable[[int], None] | None = None):
        self.cfg = cfg
        rec = read_party_record(cfg.records, party=cfg.party)
        self.rounds = rec.rounds
        self.meta = rec.metadata
        self.n_rounds = len(self.rounds)
        if self.n_rounds == 0:
            raise ParameterError(f"{cfg.records} holds no rounds")
        self.block_rounds = cfg.block_rounds or self.n_rounds
        self.n_blocks = math.ceil(self.n_rounds / self.block_rounds)
        self.pool = AuthPool.load(cfg.auth_key, params=LINK_PARAMS)
        self.position = PoolPosition(cfg.position_path)
        self.store = KeyStore(cfg.store, unit_bits=cfg.unit_bits)
        self.on_listen = on_listen
        self.summary = NodeSummary(party=cfg.party, run_id=self.meta.run_id, n_blocks=self.n_blocks)
        self._session_task: asyncio.Task[bool] | None = None
        self._done = asyncio.Event()
        self._fatal: BaseException | None = None
        self._gave_up = False
        self.codec: LinkCodec | None = None
        self.checks0 = 0
        self._last_activity = time.monotonic()

    def close(self) -> None:
        self.store.close()

    # ---- store bookkeeping ----------------------------------------------------------------------
    def store_view(self) -> dict[str, Any]:
        run_id = self.meta.run_id
        blocks = self.store.blocks(run_id=run_id)
        return {
            "run_id": run_id,
            "rounds": self.n_rounds,
            "block_rounds": self.block_rounds,
            "n_blocks": self.n_blocks,
            "high": max((b.block for b in blocks), default=-1),
            "pending": [b.block for b in blocks if b.state == "pending"],
        }

    def check_peer(self, peer: dict[str, Any]) -> None:
        mine = self.store_view()
        for k in ("run_id", "rounds", "block_rounds", "n_blocks"):
            if peer.get(k) != mine[k]:
                raise _PeerMismatchError(f"the peer's {k} is {peer.get(k)!r}, ours is {mine[k]!r}")
        lists = [peer.get("pending"), peer.get("committed", [])]
        if (
            not isinstance(peer.get("high"), int)
            or not all(isinstance(x, list) for x in lists)
            or not all(isinstance(b, int) for x in lists for b in x)
        ):
            raise ProtocolAbort("protocol", "malformed hello")

    def _discard_unfinished(self, keep: set[int] | None = None) -> list[int]:
        run_id = self.meta.run_id
        gone = []
        for b in self.store.blocks(run_id=run_id):
            if b.state in ("open", "pending") and (keep is None or b.block not in keep):
                self.store.discard_block(run_id=run_id, block=b.block, reason="unfinished")
                gone.append(b.block)
        return gone

    def resolve_alice(self, peer: dict[str, Any]) -> list[int]:
        """Alice: which of Bob's pending blocks she committed; discard her own unfinished."""
        run_id = self.meta.run_id
        committed = [
            int(b)
            for b in peer["pending"]
            if self.store.block_state(run_id=run_id, block=int(b)) == "committed"
        ]
        gone = self._discard_unfinished()
        self._note(committed=[], discarded=gone)
        return committed

    def resolve_bob(self, peer: dict[str, Any]) -> None:
        """Bob: commit what Alice committed, discard the rest of his unfinished blocks."""
        run_id = self.meta.run_id
        committed = {int(b) for b in peer.get("committed", [])}
        done = []
        for b in sorted(committed):
            if self.store.block_state(run_id=run_id, block=b) == "pending":
                self.store.commit_block(run_id=run_id, block=b)
                done.append(b)
        gone = self._discard_unfinished(keep=committed)
        self._note(committed=done, discarded=gone)

    def mark_skipped(self, upto: int) -> None:
        """Record blocks below ``upto`` that this store never saw (the peer started them) as
        aborted, so that both stores list the same blocks in the same states."""
        run_id = self.meta.run_id
        seen = {b.block for b in self.store.blocks(run_id=run_id)}
        for b in range(upto):
            if b not in seen:
                self.store.discard_block(run_id=run_id, block=b, reason="skipped")

    def _note(self, *, committed: list[int], discarded: list[int], when: str = "hello") -> None:
        for k, v in (("committed", committed), ("discarded", discarded)):
            if v:
                self.summary.resolved.setdefault(k, []).extend(v)
                log.info("resolved at %s: %s blocks %s", when, k, v)

    def eps_auth(self) -> float:
        """Forgery bound of the current block: every tag checked is one attempt."""
        if self.codec is None:
            return 0.0
        return self.pool.params.eps_auth(self.codec.tags_checked - self.checks0)

    def end_block(
        self,
        b: int,
        party: ProtocolParty,
        opened: float,
        auth_bits: int,
        finished: float | None,
        *,
        n_keys: int | None = None,
    ) -> None:
        run_id = self.meta.run_id
        out = party.outcome
        state = self.store.block_state(run_id=run_id, block=b)
        if n_keys is None and state == "open":
            reason = out.abort_reason if out is not None else "interrupted"
            self.store.discard_block(run_id=run_id, block=b, reason=reason)
            state = "aborted"
        public = dict(out.public) if out is not None else {}
        public.pop("seconds", None)
        rep = BlockReport(
            block=b,
            state="committed" if state == "committed" else state,  # type: ignore[arg-type]
            abort_reason=None if state == "committed" else (out.abort_reason if out else None),
            secret_bits=int(public.get("secret_bits", 0)) if state == "committed" else 0,
            keys=int(n_keys or 0),
            auth_bits=int(auth_bits),
            eps_auth=self.eps_auth(),
            opened_at=opened,
            finished_at=finished,
            committed_at=time.time() if state == "committed" else None,
            report={
                k: public.get(k)
                for k in ("rounds", "chsh", "qber", "qber_hint", "leak_bits", "frames")
            },
        )
        self.summary.blocks.append(rep)
        self.summary.auth_bits += int(auth_bits)
        log.info("block %s", json.dumps(rep.to_dict(), sort_keys=True, default=str))

    # ---- running --------------------------------------------------------------------------------
    async def _session(self, stream: FrameStream) -> bool:
        self.summary.sessions += 1
        sess = _Session(self, stream)
        try:
            return await sess.run()
        except _FATAL:
            raise
        except (_SessionEnd, QRepeaterError) as exc:
            log.warning("session ended: %s", exc)
            return False
        finally:
            await stream.close()

    async def _serve(self) -> None:
        assert self.cfg.listen is not None
        host, port = self.cfg.listen
        lock = asyncio.Lock()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream = FrameStream(
                reader,
                writer,
                max_frame_bytes=self.pool.params.max_payload_bytes + 512,
                timeout_s=self.cfg.timeout_s,
            )
            # One session at a time. A new connection waits for the current session to end
            # (on the peer's closed connection, or its read timeout) rather than cancelling
            # it: an unauthenticated connection must not be able to abort an authenticated
            # session's block.
            async with lock:
                if self._done.is_set():
                    await stream.close()
                    return
                self._last_activity = time.monotonic()
                self._session_task = asyncio.ensure_future(self._session(stream))
                try:
                    if await self._session_task:
                        self._done.set()
                except _FATAL as exc:
                    self._fatal = exc
                    self._done.set()
                except asyncio.CancelledError:
                    pass
                self._last_activity = time.monotonic()

        self._last_activity = time.monotonic()
        server = await asyncio.start_server(handle, host, port, limit=1 << 20)
        bound = server.sockets[0].getsockname()[1]
        self.summary.listen_port = int(bound)
        log.info("alice listening on %s:%d", host, bound)
        if self.on_listen is not None:
            self.on_listen(int(bound))
        async with server:
            while not self._done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done.wait(), 1.0)
                idle = self._session_task is None or self._session_task.done()
                if idle and time.monotonic() - self._last_activity > self.cfg.retry_for_s:
                    self._gave_up = True
                    break
        if self._session_task is not None and not self._session_task.done():
            self._session_task.cancel()
            with contextlib.suppress(BaseException):
                await self._session_task

    async def _client(self) -> None:
        assert self.cfg.connect is not None
        host, port = self.cfg.connect
        deadline = time.monotonic() + self.cfg.retry_for_s
        delay = 0.1
        while True:
            try:
                stream = await connect(
                    host,
                    port,
                    max_frame_bytes=self.pool.params.max_payload_bytes + 512,
                    timeout_s=self.cfg.timeout_s,
                )
            except TransportError as exc:
                if time.monotonic() > deadline:
                    raise TransportError(f"gave up reconnecting: {exc}") from None
                await asyncio.sleep(delay)
                delay = min(2 * delay, 2.0)
                continue
            delay = 0.1
            if await self._session(stream):
                return
            deadline = time.monotonic() + self.cfg.retry_for_s

    def resolve_alone(self) -> None:
        """What a node can settle without its peer, at start-up: open blocks (nothing staged)
        are given up on both sides, and so are Alice's pending blocks (she never committed
        them, so Bob cannot have). Bob's pending blocks wait for Alice's answer."""
        run_id = self.meta.run_id
        gone = []
        for b in self.store.blocks(run_id=run_id):
            if b.state == "open" or (b.state == "pending" and self.cfg.party == "alice"):
                self.store.discard_block(run_id=run_id, block=b.block, reason="restart")
                gone.append(b.block)
        self._note(committed=[], discarded=gone, when="start-up")

    def warm_up(self) -> float:
        """Reconcile a small random key locally once (nothing secret, no message leaves the
        process), so that imports, compiled decoders and cached codes are loaded before the
        first block, not during it. Returns the seconds spent."""
        from qrepeater.qkdpp.channel import PublicChannel
        from qrepeater.qkdpp.reconciliation import reconcile

        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        x = rng.integers(0, 2, 20_000, dtype=np.uint8)
        y = x ^ (rng.random(x.size) < 0.03).astype(np.uint8)
        with contextlib.suppress(QRepeaterError):
            reconcile(x, y, qber=0.03, channel=PublicChannel(), config=self.cfg.distill.reconcile)
        # the finite-key bound and privacy amplification load scipy's optimiser and FFT
        from qrepeater.diqkd.keyrate import finite_key
        from qrepeater.qkdpp.amplify import toeplitz_hash

        cfg = self.cfg.distill
        with contextlib.suppress(QRepeaterError, ValueError):
            finite_key(
                method=cfg.method,
                rounds=100_000,
                key_rounds=25_000,
                test_rounds=50_000,
                chsh=2.6,
                qber=0.03,
                eps=cfg.eps / 2,
                leak_ec_bits=5_000.0,
                setting_probabilities=cfg.agreed_settings().probabilities(),
            )
        toeplitz_hash(x, rng.integers(0, 2, x.size + 999, dtype=np.uint8), n_out=1_000)
        return time.perf_counter() - t0

    async def run(self) -> NodeSummary:
        """Serve or connect until every block is resolved; returns the summary."""
        self.resolve_alone()
        if self.cfg.warm_up:
            log.info("warmed up in %.2f s", await asyncio.to_thread(self.warm_up))
        if self.cfg.party == "alice":
            await self._serve()
            if self._fatal is not None:
                raise self._fatal
            if self._gave_up:
                raise TransportError(
                    f"no session with Bob finished the run within {self.cfg.retry_for_s:g} s"
                )
        elif not self.all_final():
            await self._client()
        else:
            log.info("every block is already committed or aborted in this store")
        self.summary.done = True
        return self.summary

    def all_final(self) -> bool:
        """Every block of the record is committed or aborted here. For Bob this means he has
        nothing left to do: he only commits after Alice and only discards what she did not
        commit. (Alice still has to tell Bob about blocks he may hold as pending.)"""
        states = {b.block: b.state for b in self.store.blocks(run_id=self.meta.run_id)}
        return all(states.get(b) in ("committed", "aborted") for b in range(self.n_blocks))


class _PeerMismatchError(ParameterError):
    """The peer runs another record, block size or run: nothing to do together."""


class PoolExhaustedError(AuthenticationError):
    """The authentication pool cannot authenticate another block: the node stops."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reason = "auth_pool"


_FATAL = (_PeerMismatchError, PoolExhaustedError)


def run_node(cfg: NodeConfig, *, on_listen: Callable[[int], None] | None = None) -> NodeSummary:
    """Run a node to completion (blocking); closes its store."""
    node = Node(cfg, on_listen=on_listen)
    try:
        return asyncio.run(node.run())
    finally:
        node.close()

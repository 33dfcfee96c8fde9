"""Key Management Entity (KME): ETSI GS QKD 014 V1.1.1 key delivery over mutual TLS.

One KME runs beside each node and serves the node's :class:`~qrepeater.qkdpp.keystore.KeyStore`
to Secure Application Entities (SAEs) with the three methods of the standard (clause 5):

* ``GET /api/v1/keys/{slave_SAE_ID}/status`` (Get status),
* ``GET|POST /api/v1/keys/{slave_SAE_ID}/enc_keys`` (Get key; the caller is the *master*),
* ``GET|POST /api/v1/keys/{master_SAE_ID}/dec_keys`` (Get key with key IDs; the caller is the
  *slave*),

with the data formats of clause 6 (``key_ID``, ``key`` in base64, ``number``, ``size``, ...) and
errors 400 / 401 / 503 carrying ``{"message", "details"}``. The OpenAPI document of this
interface ships with the package (:func:`openapi_document`).

**Identity.** HTTPS requires a client certificate issued by the configured CA (mutual TLS, TLS
1.2 or 1.3); the caller's SAE_ID is the subject common name of that certificate and nothing else
(no header or body field is read for it).

**Keys used once.** The two KMEs of a link hold the same keys under the same ids (the nodes
commit the same blocks). The *leader* KME (``--peer-listen``) is the only one that picks key ids;
the *follower* (``--peer-connect``) asks it. Before any master SAE receives a key, both KMEs have
recorded, durably, which ids belong to which (master, slave) pair:

* master attached to the leader: the leader reserves ``n`` keys in its store, records the request
  in its :class:`~.kme_ledger.Ledger`, tells the follower (``reserve``, over the authenticated
  link of :mod:`.kme_peer`), which records and reserves the same ids for the slave, and only after
  the follower's acknowledgement delivers them (store: ``reserved -> delivered``, bytes wiped)
  and answers the SAE;
* master attached to the follower: the follower records the request, asks the leader
  (``allocate``), which reserves and records the ids for its slave before answering; the
  follower then records and reserves the ids and delivers them.

``dec_keys`` is local: the ledger must name this KME as the *slave* side of every id, the
request's master must be the one in the URL and its slave the caller, else 401 and nothing is
released; the store then delivers all ids or none (a key is never delivered twice).

**Crashes** (``kill -9`` at any instant). Every step is a durable transaction and is
idempotent under its request id, so a restarted KME finishes what was started: at start-up the
leader releases keys its store reserved but its ledger never recorded (they were never sent
anywhere), both KMEs re-reserve recorded keys the store still lists as available, and keys
reserved for a local master whose answer may have been lost are confirmed with the peer and then
*consumed* (delivered to nobody): a key whose response was lost counts as used and is never
handed out again. A request the peer could not confirm in time is answered 503 and finished the
same way in the background.

**Key sizes.** The store holds keys of ``unit_bits`` bits (256 by default). A request may ask for
any ``size`` that is a multiple of 8 between ``min_key_size`` (8) and ``max_key_size`` (=
``unit_bits``); a key of ``size < unit_bits`` bits is the first ``size`` bits of one stored key
and the rest of that key is discarded, so ``stored_key_count`` always drops by exactly the number
of keys delivered. Larger keys (several units under one id) are not offered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import re
import ssl
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from qrepeater.errors import (
    AuthenticationError,
    KeyNotFound,
    KeyStateError,
    KeyStoreEmpty,
    KeyStoreError,
    ParameterError,
    TransportError,
)
from qrepeater.qkdpp.keystore import KeyRecord, KeyStore
from qrepeater.service.kme_ledger import Ledger, RequestRecord
from qrepeater.service.kme_peer import PeerLink, Role, load_auth_pool

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

__all__ = [
    "KMEConfig",
    "KMEError",
    "KeyManager",
    "create_app",
    "openapi_document",
    "run_kme",
    "sae_id_of",
    "server_ssl_context",
]

log = logging.getLogger("qrepeater.kme")
T = TypeVar("T")
_SAE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,63}")
"""SAE_IDs (and KME_IDs) accepted in URLs: the pattern of the OpenAPI document."""
_MAX_BODY = 1 << 20
_NO_BODY = object()
PEER_DOWN = "peer KME not connected"
NOT_AT_PEER = "keys not yet committed at both nodes; retry"


class KMEError(Exception):
    """An answer of the KME other than 200: HTTP status, message and details (clause 6.5)."""

    def __init__(
        self, status: int, message: str, details: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = [dict(d) for d in details]

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True)
class KMEConfig:
    """Limits and identity of one KME (values reported by Get status, clause 6.1).

    ``key_size`` is the default size of a key in bits; ``min_key_size``/``max_key_size`` bound
    the ``size`` a request may ask for (``max_key_size`` of ``None`` means the store's unit);
    ``max_key_count`` is the advertised capacity of the store (reported, not enforced: the node
    decides how many keys it commits); ``peer_timeout_s`` bounds the wait for the other KME.
    """

    kme_id: str
    key_size: int = 256
    max_key_per_request: int = 128
    min_key_size: int = 8
    max_key_size: int | None = None
    max_key_count: int = 1_000_000
    peer_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not _SAE_ID.fullmatch(self.kme_id):
            raise ParameterError(f"kme_id must be a non-empty URL-safe name, got {self.kme_id!r}")
        if not 1 <= self.max_key_per_request <= 10_000:
            raise ParameterError("max_key_per_request must be in 1..10000")
        if self.min_key_size < 8 or self.min_key_size % 8:
            raise ParameterError("min_key_size must be a positive multiple of 8")
        if self.max_key_size is not None and (
            self.max_key_size % 8 or self.max_key_size < self.min_key_size
        ):
            raise ParameterError("max_key_size must be a multiple of 8 and >= min_key_size")
        if self.key_size % 8 or self.key_size < self.min_key_size:
            raise ParameterError("key_size must be a multiple of 8 and >= min_key_size")
        if self.max_key_count < 0 or self.peer_timeout_s <= 0:
            raise ParameterError("max_key_count must be >= 0 and peer_timeout_s > 0")


def openapi_document(
    *,
    max_key_per_request: int | None = None,
    min_key_size: int | None = None,
    max_key_size: int | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3 document of the ETSI GS QKD 014 interface served here (package data).

    The shipped document states the default limits (128 keys per request, sizes of 8..256
    bits); the keyword arguments put a KME's own limits in their place.
    """
    text = resources.files("qrepeater.service").joinpath("openapi/etsi014.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    schemas = doc["components"]["schemas"]
    get_params = doc["paths"]["/api/v1/keys/{slave_SAE_ID}/enc_keys"]["get"]["parameters"]
    number = [schemas["KeyRequest"]["properties"]["number"], get_params[0]["schema"]]
    size = [schemas["KeyRequest"]["properties"]["size"], get_params[1]["schema"]]
    if max_key_per_request is not None:
        for item in number:
            item["maximum"] = max_key_per_request
        schemas["KeyIDs"]["properties"]["key_IDs"]["maxItems"] = max_key_per_request
    for item in size:
        if min_key_size is not None:
            item["minimum"] = min_key_size
        if max_key_size is not None:
            item["maximum"] = max_key_size
    return doc


def server_ssl_context(
    *, cert: str | Path, key: str | Path, ca: str | Path, tls_version: str | None = None
) -> ssl.SSLContext:
    """TLS context of a KME: presents ``cert``/``key``, *requires* a client certificate signed
    by ``ca`` (mutual TLS), TLS 1.2 or newer (``tls_version`` pins one, for tests)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls_version is not None:
        versions = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
        if tls_version not in versions:
            raise ParameterError(f"tls_version must be '1.2' or '1.3', got {tls_version!r}")
        ctx.minimum_version = ctx.maximum_version = versions[tls_version]
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def sae_id_of(peercert: Mapping[str, Any] | None) -> str:
    """SAE_ID of a caller: the subject common name of its (verified) client certificate.

    Raises :class:`KMEError` 401 when there is no certificate or its subject has no or several
    common names.
    """
    if not peercert:
        raise KMEError(401, "a client certificate is required")
    names = [
        value for rdn in peercert.get("subject", ()) for attr, value in rdn if attr == "commonName"
    ]
    if len(names) != 1 or not names[0]:
        raise KMEError(401, "the client certificate must carry exactly one subject common name")
    return str(names[0])


def _check_sae_id(value: str, what: str) -> str:
    if not _SAE_ID.fullmatch(value):
        raise KMEError(400, f"{what} is not a valid SAE_ID", [{"parameter": what}])
    return value


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KMEError(400, f"{name} must be an integer", [{"parameter": name}])
    return value


def _query_int(value: str | None, name: str) -> int | None:
    """An integer query parameter (decimal digits, optional sign) or ``None``."""
    if value is None:
        return None
    text = value.strip()
    if not text or not text.lstrip("+-").isdigit() or not text.isascii() or len(text) > 12:
        raise KMEError(400, f"{name} must be an integer", [{"parameter": name}])
    return int(text)


def _array(body: Mapping[str, Any], name: str, item: type) -> list[Any]:
    """``body[name]`` as a list whose items are all of type ``item`` (absent: empty)."""
    value = body.get(name)
    if value is None and name not in body:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, item) and not isinstance(v, bool) for v in value
    ):
        raise KMEError(
            400, f"{name} must be an array of {item.__name__} values", [{"parameter": name}]
        )
    return value


def _object(body: Mapping[str, Any], name: str) -> None:
    if name in body and not isinstance(body[name], dict):
        raise KMEError(400, f"{name} must be an object", [{"parameter": name}])


def _check_key_id(value: Any) -> str:
    if not isinstance(value, str):
        raise KMEError(400, "key_ID must be a string", [{"parameter": "key_ID"}])
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise KMEError(400, "key_ID must be a UUID", [{"parameter": "key_ID"}]) from None


def _container(records: Sequence[KeyRecord], sizes: Sequence[int]) -> dict[str, Any]:
    return {
        "keys": [
            {"key_ID": r.key_id, "key": base64.b64encode(r.key[: s // 8]).decode("ascii")}
            for r, s in zip(records, sizes, strict=True)
        ]
    }


class KeyManager:
    """The KME's logic, independent of HTTP: status, enc_keys, dec_keys, the peer's requests and
    crash recovery (see the module docstring). Blocking store and ledger calls run in threads.
    """

    def __init__(self, *, store: KeyStore, ledger: Ledger, config: KMEConfig, role: Role) -> None:
        self.store = store
        self.ledger = ledger
        self.config = config
        self.role: Role = role
        self.link: PeerLink | None = None
        unit = store.unit_bits
        self.max_key_size = unit if config.max_key_size is None else config.max_key_size
        if self.max_key_size > unit:
            raise ParameterError(f"max_key_size {self.max_key_size} exceeds the store's {unit}")
        if config.key_size > self.max_key_size:
            raise ParameterError(f"key_size {config.key_size} exceeds max_key_size")
        self._pending: set[str] = set()
        self._rid_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._wake = asyncio.Event()
        self._background: asyncio.Task[None] | None = None

    def attach(self, link: PeerLink) -> None:
        self.link = link

    @staticmethod
    async def _run(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(functools.partial(func, *args, **kwargs))

    def _require_link(self) -> PeerLink:
        if self.link is None:
            raise KMEError(503, "no peer KME configured")
        return self.link

    # ---- Get status -----------------------------------------------------------------------------
    async def status(self, caller: str, slave: str) -> dict[str, Any]:
        _check_sae_id(slave, "slave_SAE_ID")
        count = await self._run(self.store.available_count)
        link = self.link
        return {
            "source_KME_ID": self.config.kme_id,
            "target_KME_ID": (link.peer_kme_id if link and link.peer_kme_id else "unknown"),
            "master_SAE_ID": caller,
            "slave_SAE_ID": slave,
            "key_size": self.config.key_size,
            "stored_key_count": count,
            "max_key_count": self.config.max_key_count,
            "max_key_per_request": self.config.max_key_per_request,
            "max_key_size": self.max_key_size,
            "min_key_size": self.config.min_key_size,
            "max_SAE_ID_count": 0,
            "status_extension": {
                "peer_link_up": bool(link and link.connected.is_set()),
                "peer_link_frames_left": link.frames_left if link else 0,
            },
        }

    # ---- Get key (master) ------------------------------------------------------------------------
    def check_request(self, number: Any, size: Any) -> tuple[int, int]:
        """Validated ``(number, size)`` of a key request (400 otherwise)."""
        n = 1 if number is None else _as_int(number, "number")
        s = self.config.key_size if size is None else _as_int(size, "size")
        if n < 1:
            raise KMEError(400, "number must be at least 1", [{"parameter": "number"}])
        if n > self.config.max_key_per_request:
            raise KMEError(
                400,
                f"number {n} exceeds max_key_per_request={self.config.max_key_per_request}",
                [{"parameter": "number", "max_key_per_request": self.config.max_key_per_request}],
            )
        if s % 8 or not self.config.min_key_size <= s <= self.max_key_size:
            raise KMEError(
                400,
                f"size must be a multiple of 8 in [{self.config.min_key_size}, "
                f"{self.max_key_size}] bits, got {s}",
                [
                    {
                        "parameter": "size",
                        "min_key_size": self.config.min_key_size,
                        "max_key_size": self.max_key_size,
                    }
                ],
            )
        return n, s

    async def enc_keys(self, caller: str, slave: str, number: Any, size: Any) -> dict[str, Any]:
        _check_sae_id(slave, "slave_SAE_ID")
        n, s = self.check_request(number, size)
        rid = str(uuid.uuid4())
        # shielded: a client that hangs up never interrupts the durable sequence half-way
        return await asyncio.shield(self._enc(rid, caller, slave, n, s))

    async def _enc(self, rid: str, master: str, slave: str, n: int, size: int) -> dict[str, Any]:
        link = self._require_link()
        if not link.connected.is_set():
            # nothing reserved yet: fail before touching the store (no key is used up)
            raise KMEError(503, PEER_DOWN)
        if self.role == "leader":
            try:
                recs = await self._run(
                    self.store.reserve, n, master_sae=master, slave_sae=slave, request_id=rid
                )
            except KeyStoreEmpty:
                raise KMEError(503, "not enough keys", [{"requested": n}]) from None
            ids = [r.key_id for r in recs]
            await self._run(
                self.ledger.add_request,
                rid=rid, role="master", master_sae=master, slave_sae=slave,
                number=n, size=size, key_ids=ids,
            )  # fmt: skip
            try:
                answer = await link.request(
                    {"op": "reserve", "rid": rid, "master": master, "slave": slave,
                     "size": size, "ids": ids},
                    timeout=self.config.peer_timeout_s,
                )  # fmt: skip
            except (TransportError, AuthenticationError) as exc:
                self._defer(rid)
                raise KMEError(503, f"peer KME unavailable: {exc}") from None
            if answer.get("unknown"):
                # the peer's node has not committed these keys yet and reserved nothing: give
                # them back (nobody has seen them) rather than use them up
                await self._run(self._withdraw, rid, ids)
                raise KMEError(503, NOT_AT_PEER)
            if not answer.get("ok"):
                self._defer(rid)
                raise KMEError(503, f"peer KME refused: {answer.get('message', '')}")
        else:
            await self._run(
                self.ledger.add_request,
                rid=rid, role="master", master_sae=master, slave_sae=slave, number=n, size=size,
            )  # fmt: skip
            try:
                answer = await link.request(
                    {"op": "allocate", "rid": rid, "master": master, "slave": slave,
                     "number": n, "size": size},
                    timeout=self.config.peer_timeout_s,
                )  # fmt: skip
            except (TransportError, AuthenticationError) as exc:
                self._defer(rid)
                raise KMEError(503, f"peer KME unavailable: {exc}") from None
            if not answer.get("ok"):
                if answer.get("empty"):
                    await self._run(self.ledger.set_status, rid, "failed")
                    raise KMEError(503, "not enough keys", [{"requested": n}])
                self._defer(rid)
                raise KMEError(503, f"peer KME refused: {answer.get('message', '')}")
            ids = self._ids_from(answer, n)
            if await self._run(self._missing, ids):
                await self._cancel(rid)
                raise KMEError(503, NOT_AT_PEER)
            await self._run(self.ledger.set_keys, rid, ids)
            try:
                await self._run(self._ensure_reserved, ids, master, slave, rid)
            except KeyStoreError as exc:
                self._defer(rid)
                raise KMEError(503, f"keys not ready in this KME's store: {exc}") from None
        delivered = await self._run(self.store.deliver, ids, sae=master)
        return _container(delivered, [size] * len(delivered))

    def _missing(self, ids: Sequence[str]) -> list[str]:
        """Those ``ids`` this KME's store does not hold (its node has not committed them)."""
        out = []
        for k in ids:
            try:
                self.store.get(k)
            except KeyNotFound:
                out.append(k)
        return out

    def _withdraw(self, rid: str, ids: list[str]) -> None:
        """Leader: undo a reservation no one has seen (ledger first; a crash in between
        leaves store-only reservations, which start-up releases)."""
        self.ledger.forget(rid)
        self.store.release(ids)

    async def _cancel(self, rid: str) -> None:
        """Follower: give up request ``rid`` whose ids this store lacks, and ask the leader to
        release them (best effort: if that fails the leader's copies stay reserved, unused)."""
        await self._run(self.ledger.set_status, rid, "failed")
        self._pending.discard(rid)
        link = self.link
        if link is not None:
            with contextlib.suppress(TransportError, AuthenticationError):
                await link.request({"op": "cancel", "rid": rid}, timeout=self.config.peer_timeout_s)

    @staticmethod
    def _ids_from(answer: Mapping[str, Any], n: int) -> list[str]:
        ids = answer.get("ids")
        if not isinstance(ids, list) or len(ids) != n or not all(isinstance(i, str) for i in ids):
            raise KMEError(503, "peer KME sent a malformed answer")
        return [str(i) for i in ids]

    def _ensure_reserved(self, ids: list[str], master: str, slave: str, rid: str) -> None:
        """Reserve ``ids`` for (master, slave) unless they already are (or were delivered)."""
        try:
            self.store.reserve_ids(ids, master_sae=master, slave_sae=slave, request_id=rid)
            return
        except KeyStateError:
            pass
        recs = [self.store.get(k) for k in ids]
        if all(
            r.state in ("reserved", "delivered") and (r.master_sae, r.slave_sae) == (master, slave)
            for r in recs
        ):
            return
        avail = [r.key_id for r in recs if r.state == "available"]
        taken = [r for r in recs if r.state != "available"]
        if avail and all((r.master_sae, r.slave_sae) == (master, slave) for r in taken):
            self.store.reserve_ids(avail, master_sae=master, slave_sae=slave, request_id=rid)
            return
        raise KeyStateError(f"request {rid}: key ids are held by another request")

    # ---- Get key with key IDs (slave) ------------------------------------------------------------
    async def dec_keys(self, caller: str, master: str, key_ids: Sequence[Any]) -> dict[str, Any]:
        _check_sae_id(master, "master_SAE_ID")
        if not key_ids:
            raise KMEError(400, "key_IDs must name at least one key", [{"parameter": "key_IDs"}])
        if len(key_ids) > self.config.max_key_per_request:
            raise KMEError(
                400,
                f"{len(key_ids)} key_IDs exceed max_key_per_request="
                f"{self.config.max_key_per_request}",
                [{"parameter": "key_IDs"}],
            )
        ids = [_check_key_id(k) for k in key_ids]
        if len(set(ids)) != len(ids):
            raise KMEError(400, "duplicate key_ID", [{"parameter": "key_IDs"}])
        return await asyncio.shield(self._dec(caller, master, ids))

    async def _dec(self, caller: str, master: str, ids: list[str]) -> dict[str, Any]:
        entries = await self._run(self.ledger.entries, ids)
        foreign = [
            k
            for k in ids
            if k not in entries
            or entries[k].role != "slave"
            or entries[k].master_sae != master
            or entries[k].slave_sae != caller
        ]
        if foreign:
            raise KMEError(
                401,
                f"{len(foreign)} of the key_IDs are not keys of master {master} for this SAE; "
                "nothing was released",
                [{"key_ID": k} for k in foreign],
            )
        try:
            recs = await self._run(self.store.deliver, ids, sae=caller)
        except (KeyStateError, KeyNotFound):
            states = await self._run(lambda: [self.store.get(k).state for k in ids])
            gone = [k for k, st in zip(ids, states, strict=True) if st == "delivered"]
            if gone:
                raise KMEError(
                    400,
                    f"{len(gone)} of the keys were already retrieved; nothing was released",
                    [{"key_ID": k} for k in gone],
                ) from None
            self._defer(entries[ids[0]].rid)
            raise KMEError(503, "keys are not ready yet; retry") from None
        return _container(recs, [entries[k].size for k in ids])

    # ---- the peer's requests ---------------------------------------------------------------------
    async def handle_peer(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Answer the other KME (idempotent per request id; the requests about one id are
        handled one at a time, in the order they arrived)."""
        key = str(msg.get("rid"))
        lock = self._rid_locks.get(key)
        if lock is None:
            lock = self._rid_locks[key] = asyncio.Lock()
        async with lock:
            return await self._handle_peer(msg)

    async def _handle_peer(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        if op == "cancel" and self.role == "leader":
            try:
                rid = str(uuid.UUID(str(msg["rid"])))
            except (KeyError, ValueError):
                return {"ok": False, "status": 400, "message": "malformed request"}
            return {"ok": await self._run(self._cancel_allocation, rid)}
        try:
            rid = str(uuid.UUID(str(msg["rid"])))
            master = _check_sae_id(str(msg["master"]), "master")
            slave = _check_sae_id(str(msg["slave"]), "slave")
            size = int(msg["size"])
            if op == "reserve":
                ids = [str(uuid.UUID(str(k))) for k in msg["ids"]]
                n = len(ids)
            elif op == "allocate" and self.role == "leader":
                n = int(msg["number"])
                ids = []
            else:
                return {"ok": False, "status": 400, "message": f"unexpected request {op!r}"}
        except (KeyError, TypeError, ValueError, KMEError) as exc:
            return {"ok": False, "status": 400, "message": f"malformed request: {exc}"}
        if not 1 <= n <= 10_000 or size % 8 or not 8 <= size <= self.store.unit_bits:
            return {"ok": False, "status": 400, "message": "request out of range"}
        try:
            if op == "reserve":
                known = await self._run(self.ledger.get, rid)
                missing = [] if known is not None else await self._run(self._missing, ids)
                if missing:
                    return {"ok": False, "unknown": True, "status": 503, "message": NOT_AT_PEER}
                await self._run(
                    self.ledger.add_request,
                    rid=rid, role="slave", master_sae=master, slave_sae=slave,
                    number=n, size=size, key_ids=ids,
                )  # fmt: skip
                await self._run(self._ensure_reserved, ids, master, slave, rid)
                return {"ok": True}
            return await self._allocate(rid, master, slave, n, size)
        except (KeyStoreError, ParameterError) as exc:
            return {"ok": False, "status": 503, "message": str(exc)}

    def _cancel_allocation(self, rid: str) -> bool:
        """Leader: release the keys of an allocation the follower could not use (only if none
        was delivered; the follower has reserved none)."""
        rec = self.ledger.get(rid)
        if rec is None or rec.role != "slave":
            return False
        if rec.status == "failed":
            return True
        if any(self.store.get(k).state != "reserved" for k in rec.key_ids):
            return False
        self._withdraw(rid, list(rec.key_ids))
        return True

    async def _allocate(
        self, rid: str, master: str, slave: str, n: int, size: int
    ) -> dict[str, Any]:
        prior = await self._run(self.ledger.get, rid)
        if prior is not None:
            if prior.status == "failed":
                return {"ok": False, "empty": True, "status": 503, "message": "not enough keys"}
            if prior.key_ids:
                return {"ok": True, "ids": list(prior.key_ids)}
        try:
            recs = await self._run(
                self.store.reserve, n, master_sae=master, slave_sae=slave, request_id=rid
            )
        except KeyStoreEmpty:
            await self._run(
                self.ledger.add_request,
                rid=rid, role="slave", master_sae=master, slave_sae=slave,
                number=n, size=size, status="failed",
            )  # fmt: skip
            return {"ok": False, "empty": True, "status": 503, "message": "not enough keys"}
        ids = [r.key_id for r in recs]
        rec = await self._run(
            self.ledger.add_request,
            rid=rid, role="slave", master_sae=master, slave_sae=slave,
            number=n, size=size, key_ids=ids,
        )  # fmt: skip
        return {"ok": True, "ids": list(rec.key_ids)}

    # ---- recovery --------------------------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        """Start-up reconciliation of ledger and store (blocking; before serving).

        Returns counts: ``released`` (leader: reserved in the store, unknown to the ledger, so
        never sent anywhere), ``rereserved`` (recorded keys the store still had available) and
        ``pending`` (requests to finish with the peer: confirm and consume, or allocate).
        """
        available = set(self.store.key_ids(state="available"))
        reserved = set(self.store.key_ids(state="reserved"))
        known = self.ledger.all_keys()
        released = 0
        if self.role == "leader":
            orphans = sorted(reserved - known.keys())
            if orphans:
                self.store.release(orphans)
                released = len(orphans)
                reserved -= set(orphans)
                available |= set(orphans)
        rids = {rid for k, rid in known.items() if k in available or k in reserved}
        rereserved = 0
        pending: set[str] = set()
        for rid in sorted(rids):
            rec = self.ledger.get(rid)
            if rec is None:  # pragma: no cover - keys always reference a request
                continue
            if rec.role == "slave":
                todo = [k for k in rec.key_ids if k in available]
                if todo:
                    self._ensure_reserved(list(rec.key_ids), rec.master_sae, rec.slave_sae, rid)
                    rereserved += len(todo)
            else:
                pending.add(rid)
        for rec in self.ledger.unkeyed_requests():
            if rec.role == "master":
                pending.add(rec.rid)
        self._pending |= pending
        return {"released": released, "rereserved": rereserved, "pending": len(pending)}

    def _defer(self, rid: str) -> None:
        self._pending.add(rid)
        self._wake.set()

    @property
    def pending(self) -> frozenset[str]:
        """Requests waiting to be finished with the peer."""
        return frozenset(self._pending)

    async def finish(self, rid: str) -> None:
        """Finish request ``rid`` with the peer and consume its keys (its answer was lost)."""
        rec = await self._run(self.ledger.get, rid)
        if rec is None or rec.status == "failed":
            self._pending.discard(rid)
            return
        link = self._require_link()
        if rec.role == "master" and self.role == "leader":
            key_ids = rec.key_ids
            states = await self._run(lambda: [self.store.get(k).state for k in key_ids])
            if all(s == "delivered" for s in states):
                self._pending.discard(rid)
                return
            answer = await link.request(
                {"op": "reserve", "rid": rid, "master": rec.master_sae, "slave": rec.slave_sae,
                 "size": rec.size, "ids": list(rec.key_ids)},
                timeout=self.config.peer_timeout_s,
            )  # fmt: skip
            if answer.get("unknown"):
                await self._run(self._withdraw, rid, list(rec.key_ids))
                self._pending.discard(rid)
                return
            if not answer.get("ok"):
                return
            await self._consume(rec)
        elif rec.role == "master":
            ids = list(rec.key_ids)
            if not ids:
                answer = await link.request(
                    {"op": "allocate", "rid": rid, "master": rec.master_sae,
                     "slave": rec.slave_sae, "number": rec.number, "size": rec.size},
                    timeout=self.config.peer_timeout_s,
                )  # fmt: skip
                if not answer.get("ok"):
                    if answer.get("empty"):
                        await self._run(self.ledger.set_status, rid, "failed")
                        self._pending.discard(rid)
                    return
                ids = self._ids_from(answer, rec.number)
                if await self._run(self._missing, ids):
                    await self._cancel(rid)
                    return
                rec = await self._run(self.ledger.set_keys, rid, ids)
            await self._run(self._ensure_reserved, ids, rec.master_sae, rec.slave_sae, rid)
            await self._consume(rec)
        else:
            ids = list(rec.key_ids)
            await self._run(self._ensure_reserved, ids, rec.master_sae, rec.slave_sae, rid)
        self._pending.discard(rid)

    async def _consume(self, rec: RequestRecord) -> None:
        def consume() -> None:
            todo = [k for k in rec.key_ids if self.store.get(k).state == "reserved"]
            if todo:
                self.store.deliver(todo, sae=rec.master_sae)

        await self._run(consume)

    async def on_connect(self) -> None:
        self._wake.set()

    async def background(self) -> None:
        """Finish deferred requests whenever the link is up (runs until cancelled)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()
            link = self.link
            if link is None or not link.connected.is_set():
                continue
            for rid in sorted(self._pending):
                try:
                    await self.finish(rid)
                except (TransportError, AuthenticationError, KMEError, KeyStoreError) as exc:
                    log.info("request %s still pending: %s", rid, exc)
                    break
                except Exception:  # keep finishing the others; this one is retried later
                    log.exception("request %s could not be finished", rid)


# ---- HTTP ----------------------------------------------------------------------------------------


def create_app(manager: KeyManager) -> web.Application:
    """The aiohttp application of the ETSI GS QKD 014 interface around ``manager``."""
    from aiohttp import web

    def caller_of(request: web.Request) -> str:
        transport = request.transport
        cert = None if transport is None else transport.get_extra_info("peercert")
        return sae_id_of(cert)

    async def parse_json(request: web.Request) -> Any:
        if not request.can_read_body:
            return _NO_BODY
        raw = await request.read()
        if not raw.strip():
            return _NO_BODY
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise KMEError(400, "the request body is not valid JSON") from None

    def ok(obj: Mapping[str, Any]) -> web.Response:
        return web.json_response(obj)

    async def status(request: web.Request) -> web.Response:
        caller = caller_of(request)
        return ok(await manager.status(caller, request.match_info["sae"]))

    async def enc_get(request: web.Request) -> web.Response:
        caller = caller_of(request)
        q = request.query
        number = _query_int(q.get("number"), "number")
        size = _query_int(q.get("size"), "size")
        return ok(await manager.enc_keys(caller, request.match_info["sae"], number, size))

    async def enc_post(request: web.Request) -> web.Response:
        caller = caller_of(request)
        body = await parse_json(request)
        if body is _NO_BODY:
            body = {}  # every field of the key request is optional (clause 6.2)
        if not isinstance(body, dict):
            raise KMEError(400, "the key request must be a JSON object")
        if _array(body, "additional_slave_SAE_IDs", str):
            raise KMEError(
                400,
                "additional slave SAEs are not supported (max_SAE_ID_count is 0)",
                [{"parameter": "additional_slave_SAE_IDs"}],
            )
        mandatory = _array(body, "extension_mandatory", dict)
        if mandatory:
            raise KMEError(
                400,
                "no mandatory extension is supported",
                [{"extension_mandatory": m} for m in mandatory],
            )
        _array(body, "extension_optional", dict)  # checked, then ignored (clause 6.2)
        number = body.get("number")
        size = body.get("size")
        if any(k in body and body[k] is None for k in ("number", "size")):
            raise KMEError(400, "number and size must be integers")
        return ok(await manager.enc_keys(caller, request.match_info["sae"], number, size))

    async def dec_get(request: web.Request) -> web.Response:
        caller = caller_of(request)
        key_id = request.query.get("key_ID")
        if key_id is None:
            raise KMEError(400, "key_ID is required", [{"parameter": "key_ID"}])
        return ok(await manager.dec_keys(caller, request.match_info["sae"], [key_id]))

    async def dec_post(request: web.Request) -> web.Response:
        caller = caller_of(request)
        body = await parse_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("key_IDs"), list):
            raise KMEError(400, "the body must be an object with a key_IDs array")
        _object(body, "key_IDs_extension")
        ids = []
        for item in body["key_IDs"]:
            if not isinstance(item, dict) or "key_ID" not in item:
                raise KMEError(400, "each key_IDs item must be an object with key_ID")
            _object(item, "key_ID_extension")
            ids.append(item["key_ID"])
        return ok(await manager.dec_keys(caller, request.match_info["sae"], ids))

    @web.middleware
    async def errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except KMEError as exc:
            return web.json_response(exc.body(), status=exc.status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            status = 400 if exc.status == 413 else exc.status
            keep = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            return web.json_response({"message": exc.reason}, status=status, headers=keep)
        except (KeyStoreError, TransportError, AuthenticationError) as exc:
            log.warning("request failed: %s", exc)
            return web.json_response({"message": "key store or peer unavailable"}, status=503)
        except Exception:  # the standard's answer for a server-side error is 503, never 500
            log.exception("request failed")
            return web.json_response({"message": "internal error of the KME"}, status=503)

    app = web.Application(middlewares=[errors], client_max_size=_MAX_BODY)
    base = "/api/v1/keys/{sae}"
    app.router.add_get(base + "/status", status, allow_head=False)
    app.router.add_get(base + "/enc_keys", enc_get, allow_head=False)
    app.router.add_post(base + "/enc_keys", enc_post)
    app.router.add_get(base + "/dec_keys", dec_get, allow_head=False)
    app.router.add_post(base + "/dec_keys", dec_post)
    return app


async def run_kme(
    *,
    store_path: str | Path,
    auth_key: str | Path,
    cert: str | Path,
    key: str | Path,
    ca: str | Path,
    listen: tuple[str, int],
    config: KMEConfig,
    peer_listen: tuple[str, int] | None = None,
    peer_connect: tuple[str, int] | None = None,
    ledger_path: str | Path | None = None,
    unit_bits: int = 256,
    ready: Callable[[dict[str, Any]], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run a KME until ``stop`` is set (or the task is cancelled).

    Exactly one of ``peer_listen`` (this KME leads: it picks key ids) and ``peer_connect``
    (it follows) is given. ``ready`` is called once both sockets listen, with the bound
    addresses and the recovery counts.
    """
    from aiohttp import web

    if (peer_listen is None) == (peer_connect is None):
        raise ParameterError("give exactly one of peer_listen and peer_connect")
    role: Role = "leader" if peer_listen is not None else "follower"
    pool = load_auth_pool(auth_key)
    ssl_ctx = server_ssl_context(cert=cert, key=key, ca=ca)
    store = KeyStore(store_path, unit_bits=unit_bits)
    lpath = Path(ledger_path) if ledger_path is not None else Path(f"{store_path}.kme")
    ledger = Ledger(lpath, kme_role=role)
    manager = KeyManager(store=store, ledger=ledger, config=config, role=role)
    recovered = manager.recover()
    link = PeerLink(
        role=role,
        pool=pool,
        counters=ledger,
        handler=manager.handle_peer,
        kme_id=config.kme_id,
        on_connect=manager.on_connect,
    )
    manager.attach(link)
    runner = web.AppRunner(create_app(manager), access_log=None, shutdown_timeout=2.0)
    tasks: list[asyncio.Task[Any]] = []
    try:
        await runner.setup()
        site = web.TCPSite(runner, listen[0], listen[1], ssl_context=ssl_ctx)
        await site.start()
        port = int(runner.addresses[0][1]) if runner.addresses else listen[1]
        peer_port = None
        if peer_listen is not None:
            peer_port = await link.listen(*peer_listen)
        else:
            assert peer_connect is not None
            tasks.append(asyncio.create_task(link.connect_forever(*peer_connect)))
        tasks.append(asyncio.create_task(manager.background()))
        if ready is not None:
            ready({"role": role, "port": port, "peer_port": peer_port, **recovered})
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        await link.close()  # first: it also stops the follower's reconnection loop
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        ledger.close()
        store.close()

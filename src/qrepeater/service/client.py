"""SAE-side clients of an ETSI GS QKD 014 V1.1.1 Key Management Entity.

:class:`Client` speaks the three methods of the standard (clause 5: Get status, Get key, Get key
with key IDs) over HTTPS with mutual TLS, using only the standard library (``http.client`` and
``ssl``), so an SAE needs no optional dependency. :class:`AsyncClient` offers the same methods on
:mod:`asyncio` through aiohttp (the ``qrepeater[service]`` extra), for SAEs that issue many
requests at once.

The caller's SAE_ID is not a parameter anywhere: the KME takes it from the subject common name of
the client certificate (``cert``/``key``). Errors from the KME (400, 401, 503 with the standard's
``{"message", "details"}`` body) raise :class:`KMERequestError`; TLS and connection failures raise
:class:`~qrepeater.errors.TransportError`.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import ssl
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qrepeater.errors import ParameterError, QRepeaterError, TransportError

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp

__all__ = [
    "AsyncClient",
    "Client",
    "KMERequestError",
    "KMEStatus",
    "Key",
    "client_ssl_context",
]

_API = "/api/v1/keys"
StrPath = str | Path


class KMERequestError(QRepeaterError):
    """The KME answered with an error (ETSI GS QKD 014 clause 6.5 body).

    ``status`` is the HTTP status (400, 401 or 503 per the standard), ``message`` and ``details``
    the fields of the error object.
    """

    def __init__(
        self, status: int, message: str, details: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        super().__init__(f"KME returned {status}: {message}")
        self.status = status
        self.message = message
        self.details = [dict(d) for d in details]


@dataclass(frozen=True)
class Key:
    """One key of a key container: its UUID and its bytes (``repr`` hides the bytes)."""

    key_id: str
    key: bytes

    def __repr__(self) -> str:
        return f"Key(key_id={self.key_id!r}, bits={8 * len(self.key)}, key=<hidden>)"

    @property
    def bits(self) -> int:
        return 8 * len(self.key)

    def to_json(self) -> dict[str, str]:
        """The standard's representation: ``{"key_ID": uuid, "key": base64}``."""
        return {"key_ID": self.key_id, "key": base64.b64encode(self.key).decode("ascii")}


@dataclass(frozen=True)
class KMEStatus:  # field names are the standard's
    """Status data format (ETSI GS QKD 014 clause 6.1)."""

    source_KME_ID: str  # noqa: N815
    target_KME_ID: str  # noqa: N815
    master_SAE_ID: str  # noqa: N815
    slave_SAE_ID: str  # noqa: N815
    key_size: int
    stored_key_count: int
    max_key_count: int
    max_key_per_request: int
    max_key_size: int
    min_key_size: int
    max_SAE_ID_count: int  # noqa: N815

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> KMEStatus:
        try:
            return cls(**{name: obj[name] for name in cls.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise TransportError(f"malformed status from the KME: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def client_ssl_context(
    *, cert: StrPath, key: StrPath, ca: StrPath, tls_version: str | None = None
) -> ssl.SSLContext:
    """TLS context of an SAE: verifies the KME against ``ca``, presents ``cert``/``key``.

    ``tls_version`` ``"1.2"`` or ``"1.3"`` pins the protocol version (tests, interop checks);
    by default TLS 1.2 and newer are offered, as the standard requires (clause 4.2).
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls_version is not None:
        versions = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
        if tls_version not in versions:
            raise ParameterError(f"tls_version must be '1.2' or '1.3', got {tls_version!r}")
        ctx.minimum_version = ctx.maximum_version = versions[tls_version]
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _check_sae(sae_id: str, what: str) -> str:
    if not sae_id or "/" in sae_id:
        raise ParameterError(f"{what} must be a non-empty SAE_ID without '/', got {sae_id!r}")
    return urllib.parse.quote(sae_id, safe="")


def _key_request(number: int, size: int | None) -> dict[str, int]:
    if number < 1:
        raise ParameterError(f"number must be >= 1, got {number}")
    body = {"number": int(number)}
    if size is not None:
        body["size"] = int(size)
    return body


def _key_ids_request(key_ids: Iterable[str]) -> dict[str, list[dict[str, str]]]:
    ids = [str(k) for k in key_ids]
    if not ids:
        raise ParameterError("at least one key_ID is needed")
    return {"key_IDs": [{"key_ID": k} for k in ids]}


def _parse_keys(obj: Any) -> list[Key]:
    try:
        out = []
        for item in obj["keys"]:
            out.append(Key(str(item["key_ID"]), base64.b64decode(item["key"], validate=True)))
    except (KeyError, TypeError, binascii.Error) as exc:
        raise TransportError(f"malformed key container from the KME: {exc}") from None
    return out


def _raise_for(status: int, raw: bytes) -> None:
    if status == 200:
        return
    try:
        obj = json.loads(raw)
        message = str(obj.get("message", ""))
        details = obj.get("details") or []
        if not isinstance(details, list):
            details = [{"value": details}]
    except (ValueError, AttributeError):
        message, details = raw.decode("utf-8", "replace")[:200], []
    raise KMERequestError(
        status, message, [d if isinstance(d, dict) else {"value": d} for d in details]
    )


def _split_url(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise ParameterError(f"KME url must be https://host:port, got {url!r}")
    return parsed.hostname, parsed.port or 443


class Client:
    """Blocking ETSI GS QKD 014 client of one SAE (one keep-alive HTTPS connection).

    >>> kme = Client("https://127.0.0.1:8443", cert="sae-a.pem", key="sae-a.key", ca="ca.pem")
    >>> keys = kme.enc_keys("sae-b", number=2, size=256)      # master side     # doctest: +SKIP
    >>> same = other.dec_keys("sae-a", [k.key_id for k in keys])  # slave side  # doctest: +SKIP

    Not thread-safe: use one client per thread.
    """

    def __init__(
        self,
        url: str,
        *,
        cert: StrPath,
        key: StrPath,
        ca: StrPath,
        timeout: float = 30.0,
        tls_version: str | None = None,
    ) -> None:
        self.url = url
        self._host, self._port = _split_url(url)
        self._ctx = client_ssl_context(cert=cert, key=key, ca=ca, tls_version=tls_version)
        self._timeout = float(timeout)
        self._conn: http.client.HTTPSConnection | None = None

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, context=self._ctx, timeout=self._timeout
                )
            try:
                self._conn.request(method, path, body=data, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # a keep-alive connection closed by the server: retry once on a new connection
                # only if nothing could have been processed (GET) - a POST is never replayed
                self.close()
                if attempt or method != "GET":
                    raise TransportError(f"connection to the KME lost: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise TransportError(f"cannot reach the KME at {self.url}: {exc}") from None
        _raise_for(resp.status, raw)
        try:
            return json.loads(raw)
        except ValueError:
            raise TransportError("the KME answered with invalid JSON") from None

    def status(self, slave_sae_id: str) -> KMEStatus:
        """Get status (clause 5.1) of the keys this SAE can obtain for ``slave_sae_id``."""
        sae = _check_sae(slave_sae_id, "slave_sae_id")
        return KMEStatus.from_json(self._request("GET", f"{_API}/{sae}/status"))

    def enc_keys(self, slave_sae_id: str, *, number: int = 1, size: int | None = None) -> list[Key]:
        """Get key (clause 5.2): ``number`` new keys of ``size`` bits shared with the slave SAE."""
        sae = _check_sae(slave_sae_id, "slave_sae_id")
        return _parse_keys(
            self._request("POST", f"{_API}/{sae}/enc_keys", _key_request(number, size))
        )

    def dec_keys(self, master_sae_id: str, key_ids: Iterable[str]) -> list[Key]:
        """Get key with key IDs (clause 5.3): the keys the master SAE obtained under these ids."""
        sae = _check_sae(master_sae_id, "master_sae_id")
        return _parse_keys(
            self._request("POST", f"{_API}/{sae}/dec_keys", _key_ids_request(key_ids))
        )


class AsyncClient:
    """:mod:`asyncio` ETSI GS QKD 014 client (aiohttp; the ``qrepeater[service]`` extra).

    Use as ``async with AsyncClient(url, cert=..., key=..., ca=...) as kme: await
    kme.enc_keys(...)``; requests on one client may run concurrently.
    """

    def __init__(
        self,
        url: str,
        *,
        cert: StrPath,
        key: StrPath,
        ca: StrPath,
        timeout: float = 30.0,
        tls_version: str | None = None,
        connections: int = 16,
    ) -> None:
        _split_url(url)
        self.url = url.rstrip("/")
        self._ctx = client_ssl_context(cert=cert, key=key, ca=ca, tls_version=tls_version)
        self._timeout = float(timeout)
        self._connections = int(connections)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r})"

    async def __aenter__(self) -> AsyncClient:
        import aiohttp

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ctx, limit=self._connections),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        import aiohttp

        if self._session is None:
            raise ParameterError("use 'async with AsyncClient(...)'")
        try:
            async with self._session.request(method, self.url + path, json=body) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"cannot reach the KME at {self.url}: {exc}") from None
        _raise_for(status, raw)
        try:
            return json.loads(raw)
        except ValueError:
            raise TransportError("the KME answered with invalid JSON") from None

    async def status(self, slave_sae_id: str) -> KMEStatus:
        sae = _check_sae(slave_sae_id, "slave_sae_id")
        return KMEStatus.from_json(await self._request("GET", f"{_API}/{sae}/status"))

    async def enc_keys(
        self, slave_sae_id: str, *, number: int = 1, size: int | None = None
    ) -> list[Key]:
        sae = _check_sae(slave_sae_id, "slave_sae_id")
        body = _key_request(number, size)
        return _parse_keys(await self._request("POST", f"{_API}/{sae}/enc_keys", body))

    async def dec_keys(self, master_sae_id: str, key_ids: Iterable[str]) -> list[Key]:
        sae = _check_sae(master_sae_id, "master_sae_id")
        body = _key_ids_request(key_ids)
        return _parse_keys(await self._request("POST", f"{_API}/{sae}/dec_keys", body))

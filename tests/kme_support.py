"""Test support for the KME tests: certificates (trustme), key stores, KMEs in-process and as
processes. Real components only: real TLS, real sockets, real SQLite files."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

from qrepeater.qkdpp.keystore import KeyStore
from qrepeater.service.kme import KMEConfig, run_kme

SAES = ("sae-a1", "sae-a2", "sae-b1", "sae-b2", "sae-x")


@dataclass
class Certs:
    """PEM files: a CA, the two KMEs' server certificates, SAE client certificates, and the
    odd ones (another CA's certificate, an expired one)."""

    root: Path
    ca: Path
    files: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    authority: trustme.CA | None = None

    def pair(self, name: str) -> tuple[Path, Path]:
        return self.files[name]

    def issue(self, name: str) -> tuple[Path, Path]:
        """A further client certificate with subject CN ``name`` from the same CA."""
        assert self.authority is not None
        leaf = self.authority.issue_cert(f"{name}.example", common_name=name)
        cert, key = self.root / f"{name}.pem", self.root / f"{name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        self.files[name] = (cert, key)
        return cert, key

    def client_kwargs(self, name: str) -> dict[str, Path]:
        cert, key = self.files[name]
        return {"cert": cert, "key": key, "ca": self.ca}


def make_certs(root: Path) -> Certs:
    root.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    other = trustme.CA()
    certs = Certs(root=root, ca=root / "ca.pem", authority=ca)
    ca.cert_pem.write_to_path(str(certs.ca))

    def put(name: str, leaf: trustme.LeafCert) -> None:
        cert, key = root / f"{name}.pem", root / f"{name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        for extra in leaf.cert_chain_pems[1:]:
            extra.write_to_path(str(cert), append=True)
        leaf.private_key_pem.write_to_path(str(key))
        certs.files[name] = (cert, key)

    for kme in ("kme-a", "kme-b"):
        put(kme, ca.issue_cert("127.0.0.1", "localhost", common_name=kme))
    for sae in SAES:
        put(sae, ca.issue_cert(f"{sae}.example", common_name=sae))
    put("foreign", other.issue_cert("sae-a1.example", common_name="sae-a1"))
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    put(
        "expired",
        ca.issue_cert(
            "sae-a1.example",
            common_name="sae-a1",
            not_before=past - dt.timedelta(days=30),
            not_after=past,
        ),
    )
    return certs


def fill_store(path: Path, *, blocks: int, keys_per_block: int, seed: int = 1) -> list[str]:
    """Commit ``blocks`` blocks of ``keys_per_block`` 256-bit keys (content from ``seed``);
    two stores filled with the same arguments hold the same keys under the same ids."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with KeyStore(path) as store:
        for b in range(blocks):
            key = rng.bytes(32 * keys_per_block)
            store.stage_block(run_id="run-test", block=b, key=key)
            store.commit_block(run_id="run-test", block=b)
        return store.key_ids()


def write_auth_key(path: Path, n_bytes: int = 1 << 20) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(n_bytes))
    return path


@dataclass
class PairFiles:
    certs: Certs
    store_a: Path
    store_b: Path
    auth: Path
    key_ids: list[str]


def make_pair_files(root: Path, *, blocks: int = 4, keys_per_block: int = 64) -> PairFiles:
    certs = make_certs(root / "certs")
    store_a, store_b = root / "alice-keys.db", root / "bob-keys.db"
    ids = fill_store(store_a, blocks=blocks, keys_per_block=keys_per_block)
    ids_b = fill_store(store_b, blocks=blocks, keys_per_block=keys_per_block)
    assert ids == ids_b
    return PairFiles(certs, store_a, store_b, write_auth_key(root / "link.auth"), ids)


class InProcessPair:
    """Leader KME A and follower KME B, both served from one background event loop."""

    def __init__(self, files: PairFiles, **config: Any) -> None:
        self.files = files
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stops: list[asyncio.Event] = []
        self._futs: list[Any] = []
        self.info: dict[str, dict[str, Any]] = {}

    def _start(self, name: str, **kw: Any) -> dict[str, Any]:
        got: dict[str, Any] = {}
        ready = threading.Event()

        def on_ready(info: dict[str, Any]) -> None:
            got.update(info)
            ready.set()

        async def make_stop() -> asyncio.Event:
            return asyncio.Event()

        stop = asyncio.run_coroutine_threadsafe(make_stop(), self._loop).result()
        self._stops.append(stop)
        cert, key = self.files.certs.pair(name)
        fut = asyncio.run_coroutine_threadsafe(
            run_kme(
                auth_key=self.files.auth,
                cert=cert,
                key=key,
                ca=self.files.certs.ca,
                listen=("127.0.0.1", 0),
                config=KMEConfig(kme_id=name, **self.config),
                ready=on_ready,
                stop=stop,
                **kw,
            ),
            self._loop,
        )
        self._futs.append(fut)
        if not ready.wait(30):
            raise RuntimeError(f"KME {name} did not start: {fut.exception(0.1)}")
        return got

    def __enter__(self) -> InProcessPair:
        self._thread.start()
        self.info["a"] = self._start(
            "kme-a", store_path=self.files.store_a, peer_listen=("127.0.0.1", 0)
        )
        self.info["b"] = self._start(
            "kme-b",
            store_path=self.files.store_b,
            peer_connect=("127.0.0.1", self.info["a"]["peer_port"]),
        )
        self.wait_linked()
        return self

    def wait_linked(self, timeout: float = 20.0) -> None:
        """Until B's status names A as its target (the link is up and greeted)."""
        from qrepeater.service.client import Client

        deadline = time.monotonic() + timeout
        with Client(self.url("b"), **self.files.certs.client_kwargs("sae-b1")) as c:
            while time.monotonic() < deadline:
                if c.status("sae-a1").target_KME_ID == "kme-a":
                    return
                time.sleep(0.05)
        raise RuntimeError("the KME link did not come up")

    def url(self, which: str) -> str:
        return f"https://127.0.0.1:{self.info[which]['port']}"

    def port(self, which: str) -> int:
        return int(self.info[which]["port"])

    def __exit__(self, *exc: object) -> None:
        for stop in self._stops:
            self._loop.call_soon_threadsafe(stop.set)
        for fut in self._futs:
            try:
                fut.result(timeout=30)
            except TimeoutError:

                async def dump() -> None:
                    for t in asyncio.all_tasks():
                        t.print_stack(file=sys.stderr)

                asyncio.run_coroutine_threadsafe(dump(), self._loop).result(5)
                raise
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class KMEProcess:
    """``qrepeater kme serve`` as a child process (killable with SIGKILL, restartable on the
    same ports)."""

    def __init__(
        self,
        name: str,
        *,
        files: PairFiles,
        store: Path,
        peer_listen: str | None = None,
        peer_connect: str | None = None,
        listen: str = "127.0.0.1:0",
        extra: list[str] | None = None,
    ) -> None:
        self.name = name
        self.files = files
        self.store = store
        self.peer_listen = peer_listen
        self.peer_connect = peer_connect
        self.listen = listen
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.log = files.store_a.parent / f"{name}.log"

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        cert, key = self.files.certs.pair(self.name)
        cmd = [
            sys.executable, "-m", "qrepeater", "kme", "serve",
            "--store", str(self.store), "--auth-key", str(self.files.auth),
            "--cert", str(cert), "--key", str(key), "--ca", str(self.files.certs.ca),
            "--listen", self.listen, "--kme-id", self.name, "--json", *self.extra,
        ]  # fmt: skip
        if self.peer_listen is not None:
            cmd += ["--peer-listen", self.peer_listen]
        if self.peer_connect is not None:
            cmd += ["--peer-connect", self.peer_connect]
        err = open(self.log, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        err.close()
        assert self.proc.stdout is not None
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"KME {self.name} exited: {self.log.read_text()[-2000:]}")
            buf += line
            try:
                self.info = json.loads(buf)
                break
            except ValueError:
                continue
        else:  # pragma: no cover
            self.kill()
            raise RuntimeError(f"KME {self.name} did not start in time")
        # from now on, bind the same ports on restart
        self.listen = f"127.0.0.1:{self.info['port']}"
        if self.peer_listen is not None:
            self.peer_listen = f"127.0.0.1:{self.info['peer_port']}"
        return self.info

    @property
    def url(self) -> str:
        return f"https://{self.listen}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.proc.kill()
                self.proc.wait(5)
        self.kill()


def start_process_pair(files: PairFiles) -> tuple[KMEProcess, KMEProcess]:
    a = KMEProcess("kme-a", files=files, store=files.store_a, peer_listen="127.0.0.1:0")
    a.start()
    b = KMEProcess("kme-b", files=files, store=files.store_b, peer_connect=a.peer_listen or "")
    b.start()
    return a, b


def store_view(path: Path) -> dict[str, tuple[str, str | None, str | None]]:
    """Every key's (state, master, slave) in a store, read through a fresh connection."""
    with KeyStore(path) as store:
        return {
            k: (r.state, r.master_sae, r.slave_sae) for k in store.key_ids() for r in [store.get(k)]
        }


def wait_until(pred: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())

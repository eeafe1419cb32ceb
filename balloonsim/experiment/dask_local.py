"""`--dask local`: Dask worker processes on this machine that only this runner can reach.

Dask's LocalCluster of processes listens on TCP without authentication (any local user could submit code to
run as this one) and serves HTTP (a dashboard, or at least health, metrics and a proxy). Here instead:

- every listener (scheduler, nannies, workers) is bound to 127.0.0.1 and speaks TLS with mutual
  authentication: `temporary_security()` makes a key and a self-signed certificate for this batch, held in
  memory and handed to the worker processes through their spawn pipes (never written to disk), so a connection
  without them is refused during the handshake;
- nothing serves HTTP: Dask's scheduler and workers start an HTTP server even without a dashboard, so theirs
  are made and never bound;
- the workers are processes (so runs use every core, unlike threads under one interpreter lock), and each one
  exits when the runner dies: Dask holds a pipe from the runner to each, and a closed pipe ends the process.

The workers are forked from a forkserver that has imported Dask and the simulator once; the runner starts it
before importing Dask itself, so both imports (about a second each) run side by side. The cluster then starts
in a background thread, overlapping the runner's validation of the experiment; the first submission waits
for it.
"""

from __future__ import annotations

import datetime
import logging
import multiprocessing
import threading
from typing import Any

import dask
import distributed
import distributed.utils as dask_utils
from distributed.http.routing import RoutingApplication
from tornado.httpserver import HTTPServer

from balloonsim.errors import UserError

HOST = "127.0.0.1"
# What Dask's workers do beside the runs, set for ours (the worker processes inherit it): the statistical
# profiler samples the running thread's stack every 10 ms and the event loop wakes every 20 ms to time itself,
# and every sample takes the interpreter lock from a run of pure-Python simulation.
QUIET_WORKERS = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}
FORKSERVER = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class NoHttp:
    """Dask's `start_http_server`, making the server but never binding it to a port."""

    def start_http_server(self, routes: Any, dashboard_address: Any, default_port: int = 0, **_: Any) -> None:
        self.http_application = RoutingApplication(routes)
        self.http_server = HTTPServer(self.http_application)


class QuietScheduler(NoHttp, distributed.Scheduler):
    """A scheduler with no HTTP listener."""


class QuietWorker(NoHttp, distributed.Worker):
    """A worker with no HTTP listener (defined at module level: worker processes import it by name)."""


def temporary_security() -> Any:
    """A key and self-signed certificate for one batch, held in memory: what Dask's `Security.temporary` makes,
    with an elliptic-curve key (P-256, made in microseconds) instead of its RSA-2048 one (about 0.1 s of CPU)."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError as exc:
        raise UserError(f"--dask local needs the 'cryptography' package to secure its workers ({exc})") from None
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask-internal")])
    now = datetime.datetime.now(tz=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("dask-internal")]), critical=False)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return distributed.Security(
        require_encryption=True,
        tls_ca_file=cert_pem,
        tls_client_key=key_pem,
        tls_client_cert=cert_pem,
        tls_scheduler_key=key_pem,
        tls_scheduler_cert=cert_pem,
        tls_worker_key=key_pem,
        tls_worker_cert=cert_pem,
    )


def skip_dask_forkserver_preload() -> None:
    """Keep Dask from importing pandas and the like in the runner.

    A nanny starting its worker process asks for Dask's multiprocessing context, which (once per process, the
    first time) imports `distributed` and every optional package Dask knows, pandas among them, to name them as
    the forkserver's preload: about 0.3 s of CPU in the runner while the cluster starts. Our forkserver is
    running already, with what the workers need, and a running forkserver ignores a new preload list, so those
    imports buy nothing: Dask's flag says they were done. (distributed.utils.get_mp_context; a private flag,
    hence the check that it exists.)"""
    if hasattr(dask_utils, "_forkserver_preload_set"):
        dask_utils._forkserver_preload_set = True


class SecureLocalCluster:
    """`workers` single-threaded worker processes and a scheduler in this process, all over TLS on 127.0.0.1."""

    def __init__(self, workers: int, preload: tuple[str, ...] = ()):
        self.workers = workers
        self.preload = preload
        self.security: Any = None
        self._thread: threading.Thread | None = None
        self._cluster: Any = None
        self._client: Any = None
        self._error: BaseException | None = None

    def start(self) -> None:
        """Begin starting the cluster in the background (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._build, name="balloonsim-dask-start", daemon=True)
            self._thread.start()

    def _build(self) -> None:
        try:
            self.security = temporary_security()
            worker = {
                "cls": distributed.Nanny,
                "options": {
                    "worker_class": QuietWorker,
                    "nthreads": 1,
                    "host": HOST,
                    "security": self.security,
                    "dashboard_address": None,
                    "preload": list(self.preload),
                    "silence_logs": logging.ERROR,
                },
            }
            skip_dask_forkserver_preload()
            with dask.config.set({"distributed.worker.multiprocessing-method": FORKSERVER, **QUIET_WORKERS}):
                self._cluster = self._spec_cluster(worker)
            self._client = distributed.Client(self._cluster, security=self.security)
        except BaseException as exc:  # noqa: BLE001 - raised in the runner's thread by `client()`
            self._error = exc

    def _spec_cluster(self, worker: dict[str, Any]) -> Any:
        return distributed.SpecCluster(
            scheduler={
                "cls": QuietScheduler,
                "options": {"protocol": "tls://", "host": HOST, "security": self.security, "dashboard": False},
            },
            workers=dict.fromkeys(range(self.workers), worker),
            security=self.security,
            silence_logs=logging.ERROR,
            asynchronous=False,
        )

    def client(self) -> Any:
        """The client, once the cluster is up (starting it now if `start` was not called)."""
        self.start()
        assert self._thread is not None
        self._thread.join()
        if self._error is not None:
            if isinstance(self._error, UserError):
                raise self._error
            raise UserError(f"--dask local: the cluster did not start ({self._error})") from self._error
        return self._client

    @property
    def scheduler_address(self) -> str | None:
        return self._cluster.scheduler_address if self._cluster is not None else None

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

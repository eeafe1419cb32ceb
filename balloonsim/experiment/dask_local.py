"""`--dask local`: Dask worker processes on this machine that only this runner can reach.

Dask's LocalCluster of processes listens on TCP without authentication (any local user could submit code to
run as this one) and serves HTTP (a dashboard, or at least health, metrics and a proxy). Here instead:

- every listener (the scheduler, the workers) is bound to 127.0.0.1 and speaks TLS with mutual
  authentication: `temporary_security()` makes a key and a self-signed certificate for this batch, held in
  memory and handed to the worker processes through the forkserver's pipe (never written to disk), so a
  connection without them is refused during the handshake;
- nothing serves HTTP: Dask's scheduler and workers start an HTTP server even without a dashboard, so theirs
  are made and never bound;
- the workers are processes (so runs use every core, unlike threads under one interpreter lock), without
  Dask's nannies (`WorkerProcess`), and each one exits when the runner dies (`die_with_runner`, as `--jobs N`).

The workers are forked from a forkserver that has imported Dask and the simulator once; the runner starts it
before importing Dask itself, so both imports (about half a second each) run side by side. The cluster then
starts in a background thread, overlapping the runner's validation of the experiment; the first submission
waits for the client, the workers join the scheduler as they come.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import multiprocessing
import os
import signal
import threading
from typing import Any

import dask
import distributed
from distributed.core import Status
from distributed.deploy.spec import ProcessInterface
from distributed.http.routing import RoutingApplication
from tornado.httpserver import HTTPServer

from balloonsim.collector import set_aside_for_good
from balloonsim.errors import UserError
from balloonsim.experiment.forkserver import DASK_WORKER_MODULES, worker_context
from balloonsim.experiment.lifetime import die_with_runner

HOST = "127.0.0.1"
# What Dask's workers do beside the runs, set for ours (the worker processes inherit it): the statistical
# profiler samples the running thread's stack every 10 ms, the event loop wakes every 20 ms to time itself and
# the memory monitor reads the process's RSS every 100 ms, and every sample takes the interpreter lock from a
# run of pure-Python simulation.
QUIET_WORKERS = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
    # each worker holds only the task it runs; the rest wait at the scheduler, so that a worker killed by a run
    # takes no other run's task down with it (Dask counts that death against every task the worker held)
    "distributed.scheduler.worker-saturation": 1.0,
}
CLOSE_WAIT_S = 5.0  # for a worker to exit on SIGTERM before it is killed
START_FAILURES = 3  # deaths in a row before joining the scheduler that end the batch (a worker that cannot start)
RESTART_DELAY_S = 0.1  # before starting again a worker that died before joining, doubled each time in a row


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


class WorkerProcess(ProcessInterface):
    """One Dask worker in a process of its own, in place of Dask's nanny and the worker process it starts.

    A nanny is a server of its own in the runner (another TLS listener, a queue and two threads per worker, a
    handshake with the worker and then with the scheduler, memory checks ten times a second) and starts its
    worker through Dask's multiprocessing context. Here the worker process is forked from the runner's forkserver,
    which has imported Dask and the simulator once, and runs `serve_worker`: it exits with the runner
    (`die_with_runner`) and, like a nanny's, is started again if it dies while the batch runs (a run that
    crashes its interpreter); Dask then gives that worker's tasks to the others.
    """

    def __init__(self, scheduler: str, name: Any = None, *, security: Any, preload: tuple[str, ...], runner_pid: int):
        super().__init__(scheduler, name)
        self.scheduler, self.name = scheduler, name
        self.security, self.preload, self.runner_pid = security, tuple(preload), runner_pid
        # the runner's settings now (QUIET_WORKERS), copied as a nanny copies them (distributed/nanny.py,
        # Nanny.__init__: merge(dask.config.config, ...)): the worker is forked later, once `dask.config.set`
        # has put the defaults back into the global dict, so a reference to it would hand over the defaults
        self.config = dask.config.merge(dask.config.config)
        self.process: multiprocessing.process.BaseProcess | None = None
        self.error: str | None = None  # why this worker cannot be kept running
        self._watch: asyncio.Task | None = None

    def _fork(self) -> tuple[multiprocessing.process.BaseProcess, Any]:
        """A new worker process and the pipe on which it says it has joined the scheduler."""
        context = worker_context((*DASK_WORKER_MODULES, *self.preload))
        joined, says_joined = context.Pipe(duplex=False)
        args = (self.scheduler, self.name, self.security, self.preload, self.config, self.runner_pid, says_joined)
        process = context.Process(target=serve_worker, args=args, name=f"balloonsim-dask-worker-{self.name}")
        process.daemon = True
        try:
            process.start()  # waits for the forkserver's imports: called off the event loop
        finally:
            says_joined.close()
        return process, joined

    async def start(self) -> None:
        """Fork in the background: the scheduler and the client come up meanwhile, and the first tasks wait
        at the scheduler for the worker to join."""
        self._watch = asyncio.ensure_future(self._keep_running())
        await super().start()

    async def _keep_running(self) -> None:
        """Start the worker again whenever it dies; give up (`error`) when it dies before joining the scheduler
        START_FAILURES times in a row, waiting longer after each such death."""
        failures = 0
        while self.status == Status.running:
            try:
                self.process, joined = await asyncio.to_thread(self._fork)
            except Exception as exc:  # noqa: BLE001 - reported to the runner by `SecureLocalCluster.failure`
                self.error = f"cannot start a worker process ({exc})"
                return
            if self.status != Status.running:
                break  # closed while forking: `close` ends this process
            await asyncio.to_thread(self.process.join)
            failures = 0 if _said_joined(joined) else failures + 1
            if failures >= START_FAILURES:
                self.error = (
                    f"a worker process exited (code {self.process.exitcode}) before it joined the scheduler, "
                    f"{failures} times in a row"
                )
                return
            if failures:
                await asyncio.sleep(RESTART_DELAY_S * 2 ** (failures - 1))

    async def close(self) -> None:
        self.status = Status.closing
        if self.process is not None:
            self.process.terminate()  # the worker leaves the scheduler and exits (`serve_worker`)
        if self._watch is not None:
            try:  # the watch ends once its process has, or right after a fork under way
                await asyncio.wait_for(asyncio.shield(self._watch), CLOSE_WAIT_S)
            except TimeoutError:
                if self.process is not None:
                    self.process.kill()
                await self._watch
        process = self.process
        if process is not None:
            process.terminate()
            await asyncio.to_thread(process.join, CLOSE_WAIT_S)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join)
        await super().close()


def _said_joined(joined: Any) -> bool:
    try:
        return bool(joined.poll() and joined.recv())
    except (EOFError, OSError):
        return False
    finally:
        joined.close()


def serve_worker(
    scheduler: str, name: Any, security: Any, preload: tuple[str, ...], config: dict, runner_pid: int, joined: Any
) -> None:
    """A worker process's life: a single-threaded Dask worker on 127.0.0.1 until SIGTERM (the cluster closes:
    it leaves the scheduler cleanly) or the runner dies. It says on `joined` when it has joined the scheduler."""
    die_with_runner(runner_pid)
    dask.config.set(config)
    logging.getLogger("distributed").setLevel(logging.ERROR)

    async def serve() -> None:
        worker = QuietWorker(
            scheduler,
            name=name,
            nthreads=1,
            host=HOST,
            security=security,
            dashboard_address=None,
            preload=list(preload),
        )
        async with worker:
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGTERM, lambda: asyncio.ensure_future(worker.close(reason="the batch is over"))
            )
            set_aside_for_good()  # its imports and the worker's own objects (see forkserver.start_worker)
            joined.send(True)
            joined.close()
            await worker.finished()

    asyncio.run(serve())


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
                "cls": WorkerProcess,
                "options": {"security": self.security, "preload": self.preload, "runner_pid": os.getpid()},
            }
            with dask.config.set(QUIET_WORKERS):
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

    def failure(self) -> str | None:
        """Why the cluster cannot run the batch (a worker that cannot be started), or None."""
        cluster = self._cluster
        if cluster is None:
            return None
        for worker in list(cluster.workers.values()):
            if getattr(worker, "error", None):
                return worker.error
        return None

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

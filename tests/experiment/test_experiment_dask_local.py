"""`--dask local` runs on worker processes that no one else can use, and that do not outlive the runner.

A batch of slow stand-in runs keeps the cluster up while the test looks at it from outside, as another local
user would: every listening socket of the runner and its workers is on 127.0.0.1 and speaks TLS; a plain TCP
client, a TLS client without a certificate and a Dask client with a certificate of its own are all refused; no
socket answers HTTP (no dashboard). Then SIGKILL of the runner alone ends every worker process.
"""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from experiment_support import REPO, subprocess_env

HERE = Path(__file__).resolve().parent

DRIVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from experiment_fakes import fake_run
    from balloonsim.experiment import experiment_from_dict, run_experiment
    exp = experiment_from_dict({{"name": "d", "base": {{"fake": {{"sleep": 0.5}}}}, "factors": {{"fake.k": [1, 2]}},
                                "replications": 30}})
    run_experiment(exp, out_dir={out!r}, dask="local", jobs=2, run_fn=fake_run)
    """
)


def _listeners(procs: list[psutil.Process]) -> set[tuple[str, int]]:
    found = set()
    for proc in procs:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port))
        except psutil.NoSuchProcess:
            pass
    return found


def _family(runner: psutil.Process) -> list[psutil.Process]:
    try:
        return [runner, *runner.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _plain_tcp_answer(port: int) -> bytes:
    """What a listener sends back to an HTTP request in clear text (a TLS server sends an alert or nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        try:
            return sock.recv(64)
        except (ConnectionResetError, TimeoutError):
            return b""


def _tls_without_certificate_refused(port: int) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"\x00" * 16)
                return tls.recv(64) == b""  # the server closes: it asked for a certificate we did not have
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError, TimeoutError):
        return True


@pytest.mark.slow
def test_local_cluster_accepts_only_its_runner_and_dies_with_it(tmp_path):
    import distributed

    code = DRIVER.format(here=str(HERE), out=str(tmp_path / "out"))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=subprocess_env(), stderr=subprocess.PIPE)
    runner = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + 90
        listeners: set[tuple[str, int]] = set()
        while len(listeners) < 3:  # the scheduler and two workers
            assert time.monotonic() < deadline and proc.poll() is None, "the cluster did not come up"
            time.sleep(0.2)
            listeners = _listeners(_family(runner))
        family = _family(runner)
        assert len(family) >= 3  # the runner and its two worker processes
        assert {ip for ip, _ in listeners} == {"127.0.0.1"}
        for _, port in sorted(listeners):
            answer = _plain_tcp_answer(port)
            assert not answer.startswith(b"HTTP"), port  # no dashboard, no HTTP at all
            assert _tls_without_certificate_refused(port), port
        foreign = distributed.Security.temporary()  # another user's certificate of their own
        for _, port in sorted(_listeners([runner])):  # the scheduler lives in the runner
            for address, security in ((f"tls://127.0.0.1:{port}", foreign), (f"tcp://127.0.0.1:{port}", None)):
                with pytest.raises((OSError, TimeoutError, ValueError)):
                    distributed.Client(address, security=security, timeout="3s")
        assert proc.poll() is None, "the batch must still be running for the kill below"

        workers = family[1:]
        runner.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, f"workers outlived the runner: {[p.pid for p in alive]}"
    finally:
        for p in _family(runner):
            p.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()

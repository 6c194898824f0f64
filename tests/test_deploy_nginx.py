"""deploy/nginx.conf run by Debian's nginx in front of two stand-in replicas on 127.0.0.1:
an agent's state reports all reach one replica (its id hashed), and the rest of the traffic
spreads over both. Debian's nginx (1.22) lacks ``resolve`` on an upstream server (1.27.3), so
the one ``server opscore:8000 resolve;`` line becomes the two stand-ins' addresses; the test
fails if that line or the listen line changes shape, so it runs the file as written."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from .servers import wait_for
from .storage_servers import free_port

ROOT = Path(__file__).resolve().parents[1]


def _nginx() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI (apt-get install nginx)")
        pytest.skip("nginx not installed")
    return found


class _Replica(http.server.BaseHTTPRequestHandler):
    """Answers every request with the port it listens on."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = str(self.server.server_address[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def balanced(tmp_path):
    """The URL of nginx with deploy/nginx.conf in front of two stand-in replicas, and their
    ports."""
    binary = _nginx()
    replicas = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Replica) for _ in range(2)]
    for server in replicas:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ports = [server.server_address[1] for server in replicas]
    port = free_port()
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    upstream = "server opscore:8000 resolve;"
    assert upstream in conf and "listen 8000;" in conf and "resolver " in conf
    conf = conf.replace(upstream, " ".join(f"server 127.0.0.1:{p};" for p in ports))
    conf = conf.replace("listen 8000;", f"listen 127.0.0.1:{port};")
    conf = "\n".join(line for line in conf.splitlines() if "resolver " not in line)
    (tmp_path / "logs").mkdir()
    (tmp_path / "nginx.conf").write_text(conf)
    directives = f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/logs/error.log;"
    nginx = subprocess.Popen(
        [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", directives],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if nginx.poll() is not None:
            raise AssertionError(f"nginx did not start: {nginx.stderr.read()!r}")
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).read()
        except OSError:
            return False
        return True

    try:
        wait_for(answers, timeout=20, interval=0.05)
        yield url, {str(p) for p in ports}
    finally:
        nginx.terminate()  # stopped by its PID: the master, with daemon off
        nginx.wait(timeout=10)
        for server in replicas:
            server.shutdown()
            server.server_close()


def _replica_of(url: str, path: str, method: str = "GET") -> str:
    body = b"{}" if method == "POST" else None
    request = urllib.request.Request(url + path, data=body, method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read().decode()


def test_an_agents_reports_reach_one_replica_and_the_rest_spreads(balanced) -> None:
    url, replicas = balanced
    by_agent = {}
    for i in range(32):
        reached = {_replica_of(url, f"/v1/opscore/agent/agent-{i}/state", "POST") for _ in range(5)}
        assert len(reached) == 1, f"agent-{i}'s reports reached {reached}"
        by_agent[f"agent-{i}"] = reached.pop()
    # 32 agents over two replicas: both take some (all on one: 1 in 2**31)
    assert set(by_agent.values()) == replicas
    # everything else by request: a workflow's runs, triggered again and again, spread
    runs = Counter(_replica_of(url, "/v1/opscore/workflows/digest/run", "POST") for _ in range(40))
    assert set(runs) == replicas

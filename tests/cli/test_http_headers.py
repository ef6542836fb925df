"""The ingress strips our credentials (the session cookie, a bearer token that was ours) and
passes everything else to the job (process runtime: the echo server is a host Python script)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Neuro
from tests.e2e.test_http import _free_port, _wait_ok


def test_our_credentials_never_reach_the_job(neuro: Neuro, tmp_path: Path) -> None:
    import sys

    port = _free_port()
    echo = tmp_path / "echo.py"
    echo.write_text(
        "import http.server, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = str(sorted(self.headers.items())).encode()\n"
        "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers(); self.wfile.write(body)\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    )
    job = neuro.ok(
        "run",
        "-q",
        "--detach",
        "--http-port",
        str(port),
        neuro.image,
        "--",
        sys.executable,
        str(echo),
    ).strip()
    url = json.loads(neuro.ok("status", "--json", job))["http_url"]
    token = neuro.ok("config", "show-token").strip()
    seen = _wait_ok(
        url,
        {"Authorization": f"Bearer {token}", "Cookie": "app=1; neuro_session=zzz", "X-App": "kept"},
    ).decode()
    assert token not in seen and "neuro_session" not in seen
    assert "('Cookie', 'app=1')" in seen and "('X-App', 'kept')" in seen
    neuro.ok("kill", job)

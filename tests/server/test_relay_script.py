"""The python3 relay (for images without socat or nc) carries bytes both ways and passes the
end of input on, checked against a local echo server."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

from neuro_server.runtime.docker.relay import PY_RELAY, commands


def test_python_relay_round_trip() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data[::-1])

    threading.Thread(target=echo, daemon=True).start()
    assert commands(port)[-1] == ["python3", "-c", PY_RELAY, str(port)]
    payload = b"0123456789" * 100_000
    r = subprocess.run(
        [sys.executable, "-c", PY_RELAY, str(port)],
        input=payload,
        capture_output=True,
        timeout=30,
        check=False,
    )
    server.close()
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) == len(payload)

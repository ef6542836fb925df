"""The CLI defers loading CA certificates to the first TLS handshake (neuro_cli/_fast_tls.py):
a context must hold exactly the certificates it would have held once a connection starts."""

from __future__ import annotations

import subprocess
import sys

CHECK = r"""
import ssl
expected = ssl.create_default_context().cert_store_stats()
unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
unverified.set_default_verify_paths()
expected_unverified = unverified.cert_store_stats()

from neuro_cli._fast_tls import install
install()
ctx = ssl.create_default_context()
before = ctx.cert_store_stats()
ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="example.org")
after = ctx.cert_store_stats()
un = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
un.set_default_verify_paths()
un.check_hostname = False
un.verify_mode = ssl.CERT_NONE
import socket
a, b = socket.socketpair()
try:
    un.wrap_socket(a, do_handshake_on_connect=False)
finally:
    b.close()
print(expected["x509_ca"], before["x509_ca"], after == expected, un.cert_store_stats() == expected_unverified)
"""


def test_certificates_load_at_the_first_handshake() -> None:
    r = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=False, timeout=60
    )
    assert r.returncode == 0, r.stderr
    total, before, same_after, same_unverified = r.stdout.split()
    assert int(total) > 0, "this machine has no CA certificates to compare with"
    assert before == "0"  # nothing loaded at creation: the saving
    assert same_after == "True" and same_unverified == "True"


def test_aiohttp_import_loads_no_certificates() -> None:
    code = (
        "from neuro_cli._fast_tls import install; install(); import aiohttp.connector as c; "
        "print(c._SSL_CONTEXT_VERIFIED.cert_store_stats()['x509_ca'])"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"


def test_install_before_aiohttp_defers_until_it_is_imported() -> None:
    """The CLI installs the deferral when aiohttp is first imported: commands that never import
    aiohttp (plain requests go through the SDK's light transport) do not even import ssl."""
    code = (
        "import sys; from neuro_cli._fast_tls import install_before; install_before('aiohttp');"
        " print('ssl' in sys.modules); import aiohttp.connector as c;"
        " print(c._SSL_CONTEXT_VERIFIED.cert_store_stats()['x509_ca'])"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "0"]

#!/usr/bin/env python3
"""Create the simulator's TEST-ONLY TLS material with the ``openssl`` command-line tool.

Writes into ``ctrader_sync/simulator/certs/`` (or ``--out``):

* ``ca.pem``      a self-signed test CA certificate (its key is thrown away after signing);
* ``server.pem``  a certificate for ``localhost`` / ``127.0.0.1`` signed by that CA;
* ``server.key``  the server's private key (unencrypted: it protects nothing);
* ``server-key.pem`` the same key under a name the package-data glob (``certs/*.pem``) ships;
* ``README.txt``  a note saying all of this is for tests only.

Both certificates are valid for 20 years so the shipped files do not need regenerating.  The
runtime never needs this script or any extra package: the files are plain package data.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import tempfile
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "ctrader_sync" / "simulator" / "certs"
DAYS = 20 * 365 + 5

README = """\
TEST-ONLY certificates for the ctrader_sync simulator.

ca.pem      self-signed test CA (its private key was discarded after signing)
server.pem  certificate for localhost / 127.0.0.1, signed by ca.pem
server.key  the server's private key, published on purpose
server-key.pem  the same key (the name the installed package ships and the simulator loads)

These files protect nothing: the key is public. Never trust ca.pem outside tests, and never
use these files for anything but the local simulator. Regenerate with
scripts/make_test_certs.py (needs the openssl command-line tool).
"""


def _run(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_certs(out: Path) -> None:
    """Create ``ca.pem``, ``server.pem``, ``server.key`` and ``README.txt`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ca_key = tmp / "ca.key"
        ca_pem = out / "ca.pem"
        _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", str(DAYS),
             "-keyout", str(ca_key), "-out", str(ca_pem),
             "-subj", "/O=ctrader_sync TEST-ONLY/CN=ctrader_sync simulator test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        server_key = out / "server.key"
        csr = tmp / "server.csr"
        _run("req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256",
             "-keyout", str(server_key), "-out", str(csr),
             "-subj", "/O=ctrader_sync TEST-ONLY/CN=localhost")
        ext = tmp / "server.ext"
        ext.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        )
        _run("x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
             "-set_serial", str(secrets.randbits(63)), "-out", str(out / "server.pem"),
             "-days", str(DAYS), "-sha256",
             "-extfile", str(ext))
    (out / "server-key.pem").write_bytes(server_key.read_bytes())
    (out / "README.txt").write_text(README)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args()
    make_certs(args.out)
    print(f"wrote test-only certificates to {args.out}")


if __name__ == "__main__":
    main()

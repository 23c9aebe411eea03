"""The sandbox's own certificate authority and server certificate (trustme), kept in
the state directory so restarts reuse the same CA bundle."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsFiles:
    ca_path: Path  # the CA bundle a client trusts (SF_CA_BUNDLE)
    cert_path: Path  # server certificate chain
    key_path: Path  # server private key

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert_path), str(self.key_path))
        return context


def ensure_certificates(state_dir: Path) -> TlsFiles:
    state_dir.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(state_dir / "ca.pem", state_dir / "server.pem", state_dir / "server-key.pem")
    if all(p.exists() for p in (files.ca_path, files.cert_path, files.key_path)):
        return files
    ca = trustme.CA(organization_name="billsync sandbox", organization_unit_name="local Salesforce sandbox CA")
    cert = ca.issue_cert(*HOSTS)
    _write_private(state_dir / "ca-key.pem", ca.private_key_pem.bytes())
    _write_private(files.key_path, cert.private_key_pem.bytes())
    files.cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    files.ca_path.write_bytes(ca.cert_pem.bytes())
    return files


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)

"""OAuth 2.0 at /services/oauth2/token (client credentials, JWT bearer, password) and
bearer-token checks on every REST call. Tokens expire."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sfsandbox.errors import ApiError

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PUBLIC_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}


@dataclass
class Credentials:
    """The sandbox's connected app and integration user."""

    client_id: str
    client_secret: str
    username: str = "integration@billsync.sandbox"
    password: str = "sandbox-password"
    security_token: str = "sandboxtoken"

    @classmethod
    def generate(cls) -> Credentials:
        return cls(client_id="3MVG9sandbox." + secrets.token_hex(20), client_secret=secrets.token_hex(32),
                   password=secrets.token_urlsafe(12), security_token=secrets.token_hex(8))

    @classmethod
    def load_or_create(cls, state_dir: Path) -> Credentials:
        path = state_dir / "credentials.json"
        if path.exists():
            return cls(**json.loads(path.read_text()))
        creds = cls.generate()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(creds), handle, indent=2)
        return creds


def ensure_jwt_keys(state_dir: Path) -> tuple[Path, Path]:
    """(private key PEM for the client, public key PEM the sandbox verifies with)."""
    private_path, public_path = state_dir / "jwt-private.pem", state_dir / "jwt-public.pem"
    if private_path.exists() and public_path.exists():
        return private_path, public_path
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


@dataclass
class Session:
    token: str
    client_id: str
    user_id: str
    issued_at: float
    expires_at: float


class Authority:
    def __init__(self, credentials: Credentials, org_id: str, user_id: str, public_key_pem: bytes | None,
                 token_lifetime: float = 7200.0):
        self.credentials = credentials
        self.org_id = org_id
        self.user_id = user_id
        self.public_key_pem = public_key_pem
        self.token_lifetime = token_lifetime
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._signing_key = secrets.token_bytes(32)

    # ---------------------------------------------------------------- issue

    def token(self, form: dict[str, str], basic: tuple[str, str] | None, instance_url: str) -> dict:
        grant = form.get("grant_type", "")
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if basic is not None:
            client_id, client_secret = basic
        creds = self.credentials
        if grant == "client_credentials":
            self._check_client(client_id, client_secret)
        elif grant == "password":
            self._check_client(client_id, client_secret)
            expected = creds.password + creds.security_token
            if form.get("username") != creds.username or not hmac.compare_digest(
                    form.get("password", "").encode(), expected.encode()):
                raise OAuthError("invalid_grant", "authentication failure")
        elif grant == JWT_GRANT:
            client_id = self._check_assertion(form.get("assertion", ""), instance_url)
        elif not grant:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        return self.issue(client_id or creds.client_id, instance_url)

    def issue(self, client_id: str, instance_url: str) -> dict:
        now = time.time()
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(72)}"
        with self._lock:
            self._sessions[token] = Session(token, client_id, self.user_id, now, now + self.token_lifetime)
            for key in [k for k, s in self._sessions.items() if s.expires_at < now - 86400]:
                del self._sessions[key]
        issued_at = str(int(now * 1000))
        signature = base64.b64encode(hmac.new(self._signing_key, (instance_url + issued_at).encode(),
                                              hashlib.sha256).digest()).decode()
        return {
            "access_token": token,
            "instance_url": instance_url,
            "id": f"{instance_url}/id/{self.org_id}/{self.user_id}",
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": signature,
            "scope": "api",
        }

    def _check_client(self, client_id: str | None, client_secret: str | None) -> None:
        creds = self.credentials
        if client_id != creds.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not client_secret or not hmac.compare_digest(client_secret.encode(), creds.client_secret.encode()):
            raise OAuthError("invalid_client", "invalid client credentials")

    def _check_assertion(self, assertion: str, instance_url: str) -> str:
        if not assertion:
            raise OAuthError("invalid_request", "assertion is required")
        if self.public_key_pem is None:
            raise OAuthError("invalid_grant", "no certificate is configured for the JWT bearer flow")
        audiences = [instance_url, *PUBLIC_AUDIENCES]
        try:
            claims = jwt.decode(assertion, self.public_key_pem, algorithms=["RS256"], audience=audiences,
                                options={"require": ["exp", "iss", "sub", "aud"]})
        except jwt.ExpiredSignatureError:
            raise OAuthError("invalid_grant", "expired authorization code") from None
        except jwt.InvalidAudienceError:
            raise OAuthError("invalid_grant", "audience is invalid") from None
        except jwt.PyJWTError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if claims.get("iss") != self.credentials.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if claims.get("sub") != self.credentials.username:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        return str(claims["iss"])

    # ---------------------------------------------------------------- check

    def check(self, authorization: str | None) -> Session:
        token = ""
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() in ("bearer", "oauth"):
                token = value.strip()
        with self._lock:
            session = self._sessions.get(token)
        if session is None or session.expires_at <= time.time():
            raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return session

    def expire_all(self) -> int:
        now = time.time()
        with self._lock:
            live = [s for s in self._sessions.values() if s.expires_at > now]
            for s in live:
                s.expires_at = now
        return len(live)

    def expire(self, token: str) -> bool:
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return False
            session.expires_at = time.time()
            return True

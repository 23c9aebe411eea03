"""Getting an access token: OAuth 2.0 against SF_LOGIN_URL, or a pre-issued session.

Modes (SF_AUTH):

- ``client_credentials``: ``grant_type=client_credentials`` with the connected app's id and secret.
- ``jwt``: the JWT bearer flow; an RS256 assertion signed with SF_PRIVATE_KEY_FILE
  (iss=client id, sub=username, aud=SF_JWT_AUDIENCE or ``default_jwt_audience``, exp=now+3 min).
- ``password``: the OAuth username-password flow (password + security token), for
  orgs that still allow it.
- ``session``: SF_INSTANCE_URL + SF_ACCESS_TOKEN issued elsewhere; it cannot be renewed,
  so an expired token fails clearly.

Every mode posts a form to ``{login_url}/services/oauth2/token`` through our
``SalesforceSession`` (explicit timeout, pinned CA bundle) and returns a ``Token``.
simple-salesforce is then used in its "direct" mode, so its own recursive re-login
(which loops until RecursionError on a persistent 401) never runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import requests

from connector.salesforce.errors import SalesforceAuthError, SalesforceRequestError, classify

TOKEN_PATH = "/services/oauth2/token"
JWT_LIFETIME = timedelta(minutes=3)
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class Token:
    """An access token and the instance it is valid for."""

    access_token: str = field(repr=False)
    instance_url: str
    org_id: str | None = None
    issued_at: datetime | None = None
    user_id: str | None = None  # the integration user, from the token's identity URL


@dataclass(frozen=True)
class AuthConfig:
    """What each mode needs; built from Settings by ``build_client``."""

    mode: str
    login_url: str = "https://login.salesforce.com"
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security_token: str | None = field(default=None, repr=False)
    private_key_file: Path | None = None
    jwt_audience: str | None = None
    instance_url: str | None = None
    access_token: str | None = field(default=None, repr=False)
    org_id: str | None = None


class Authenticator:
    """Obtains tokens for one ``AuthConfig``; ``can_reauthenticate`` is False for a pre-issued session."""

    def __init__(self, config: AuthConfig, session: requests.Session,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.config = config
        self.session = session
        self.clock = clock

    @property
    def can_reauthenticate(self) -> bool:
        return self.config.mode != "session"

    def authenticate(self) -> Token:
        mode = self.config.mode
        if mode == "session":
            if not (self.config.instance_url and self.config.access_token):
                raise SalesforceAuthError("SF_AUTH=session needs SF_INSTANCE_URL and SF_ACCESS_TOKEN",
                                          code="NOT_CONFIGURED")
            return Token(self.config.access_token, _https(self.config.instance_url), self.config.org_id)
        if mode == "client_credentials":
            form = {"grant_type": "client_credentials", "client_id": self.config.client_id,
                    "client_secret": self.config.client_secret}
        elif mode == "jwt":
            form = {"grant_type": JWT_BEARER_GRANT, "assertion": self.jwt_assertion()}
        elif mode == "password":
            form = {"grant_type": "password", "client_id": self.config.client_id,
                    "client_secret": self.config.client_secret, "username": self.config.username,
                    "password": (self.config.password or "") + (self.config.security_token or "")}
        else:
            raise SalesforceAuthError(f"unknown SF_AUTH mode {mode!r}", code="NOT_CONFIGURED")
        return self._token_request(form)

    def jwt_assertion(self) -> str:
        config = self.config
        if not config.private_key_file:
            raise SalesforceAuthError("SF_AUTH=jwt needs SF_PRIVATE_KEY_FILE", code="NOT_CONFIGURED")
        try:
            key = Path(config.private_key_file).read_text()
        except OSError as exc:
            raise SalesforceAuthError(f"cannot read SF_PRIVATE_KEY_FILE: {exc}", code="NOT_CONFIGURED") from exc
        now = self.clock()
        claims = {"iss": config.client_id, "sub": config.username,
                  "aud": config.jwt_audience or default_jwt_audience(config.login_url),
                  "exp": int((now + JWT_LIFETIME).timestamp())}
        try:
            return jwt.encode(claims, key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise SalesforceAuthError(f"SF_PRIVATE_KEY_FILE is not a usable RSA private key: {exc}",
                                      code="NOT_CONFIGURED") from exc

    def _token_request(self, form: dict[str, str | None]) -> Token:
        url = self.config.login_url.rstrip("/") + TOKEN_PATH
        try:
            response = self.session.post(url, data={k: v for k, v in form.items() if v is not None},
                                         headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise classify(exc, method="POST", path=TOKEN_PATH) from exc
        if response.status_code >= 500:
            raise classify(response, method="POST", path=TOKEN_PATH)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error", f"HTTP_{response.status_code}") if isinstance(body, dict) else "HTTP_ERROR"
            description = body.get("error_description", "") if isinstance(body, dict) else ""
            raise SalesforceAuthError(
                f"{self.config.login_url} refused the {self.config.mode} login: {error}"
                + (f" ({description})" if description else ""),
                code=str(error).upper(), status=response.status_code, method="POST", path=TOKEN_PATH)
        if not body.get("instance_url"):
            raise SalesforceAuthError("the token response has no instance_url", code="BAD_TOKEN_RESPONSE",
                                      method="POST", path=TOKEN_PATH)
        token = Token(body["access_token"], _https(body["instance_url"]), _org_of(body.get("id")),
                      self.clock(), _user_of(body.get("id")))
        self._check_org(token)
        return token

    def _check_org(self, token: Token) -> None:
        expected = self.config.org_id
        if expected and token.org_id and token.org_id[:15] != expected[:15]:
            raise SalesforceAuthError(
                f"logged in to org {token.org_id}, but SF_ORG_ID is {expected}: check SF_LOGIN_URL and credentials",
                code="WRONG_ORG")


def default_jwt_audience(login_url: str) -> str:
    """Salesforce wants aud = https://login.salesforce.com (production) or https://test.salesforce.com
    (sandboxes), even when the token is requested from a My Domain; other hosts (an Experience
    Cloud site, the local sandbox) are their own audience."""
    host = (urlsplit(login_url).hostname or "").lower()
    if host.endswith(".sandbox.my.salesforce.com"):
        return "https://test.salesforce.com"
    if host.endswith(".my.salesforce.com"):
        return "https://login.salesforce.com"
    return login_url.rstrip("/")


def _https(url: str) -> str:
    if urlsplit(url).scheme != "https":
        raise SalesforceRequestError(f"{url!r} is not an https URL; Salesforce is only reached over TLS",
                                     code="NOT_HTTPS")
    return url.rstrip("/")


def _identity_parts(identity_url: object) -> list[str]:
    """The token response's ``id`` is ``https://login.salesforce.com/id/<orgId>/<userId>``."""
    if not isinstance(identity_url, str):
        return []
    parts = urlsplit(identity_url).path.strip("/").split("/")
    return parts if len(parts) >= 3 and parts[0] == "id" else []


def _org_of(identity_url: object) -> str | None:
    parts = _identity_parts(identity_url)
    return parts[1] if parts else None


def _user_of(identity_url: object) -> str | None:
    parts = _identity_parts(identity_url)
    return parts[2] if parts else None


"""The sandbox's WSGI application: OAuth, the REST API under /services/data, and the
admin API under /_sandbox (loopback only, admin token; not counted as API calls)."""

from __future__ import annotations

import ipaddress
import sys
import traceback
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from sfsandbox import wire
from sfsandbox.auth import OAuthError
from sfsandbox.errors import ApiError, RecordError
from sfsandbox.notify import CdcConfig, OutboundMessage
from sfsandbox.org import Caller
from sfsandbox.rest import Call, parse_version, split_path, versions_list

if TYPE_CHECKING:
    from sfsandbox.server import SandboxServer

JSON_TYPE = "application/json;charset=UTF-8"
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    if isinstance(body, bytes):  # a blob (a ContentVersion's VersionData)
        return Response(body, status=status, headers=headers)
    text = "" if body is None or status == 204 else wire.dumps(body)
    response = Response(text, status=status, content_type=JSON_TYPE if text else None)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


class SandboxApp:
    def __init__(self, sandbox: SandboxServer):
        self.sandbox = sandbox

    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self.route(request)
        except Exception as exc:  # a bug in the sandbox: answer like Salesforce would, and say so
            traceback.print_exc(file=sys.stderr)
            response = _json(500, [{"message": f"An unexpected error occurred: {type(exc).__name__}",
                                    "errorCode": "UNKNOWN_EXCEPTION"}])
        return response(environ, start_response)

    def route(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/services/data/v"):
            return self.rest(request)
        if path in ("/services/data", "/services/data/"):
            return _json(200, versions_list())
        if path == "/services/oauth2/token":
            return self.token(request)
        if path == "/services/oauth2/userinfo" or path.startswith("/id/"):
            return self.identity(request)
        if path.startswith("/_sandbox/"):
            return self.admin(request)
        return _json(404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])

    # ----------------------------------------------------------------- OAuth

    def token(self, request: Request) -> Response:
        if request.method != "POST":
            return _json(405, {"error": "invalid_request", "error_description": "must use HTTP POST"})
        basic = None
        if request.authorization is not None and request.authorization.type == "basic":
            basic = (request.authorization.username or "", request.authorization.password or "")
        try:
            return _json(200, self.sandbox.auth.token(request.form.to_dict(), basic, self.sandbox.url))
        except OAuthError as exc:
            return _json(exc.status, exc.body())

    def identity(self, request: Request) -> Response:
        try:
            session = self.sandbox.auth.check(request.headers.get("Authorization"))
        except ApiError as exc:
            return _json(exc.status, exc.body())
        sb = self.sandbox
        return _json(200, {"id": f"{sb.url}/id/{sb.org_id}/{session.user_id}", "organization_id": sb.org_id,
                           "user_id": session.user_id, "username": sb.credentials.username,
                           "preferred_username": sb.credentials.username, "active": True,
                           "urls": {"rest": f"{sb.url}/services/data/v{{version}}/"}})

    # ----------------------------------------------------------------- REST

    def rest(self, request: Request) -> Response:
        sb = self.sandbox
        raw_path = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.path
        segments = split_path(raw_path.split("?", 1)[0])[2:]
        version = parse_version(unquote(segments[0])) if segments else None
        if version is None:
            return _json(404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
        try:
            session = sb.auth.check(request.headers.get("Authorization"))
        except ApiError as exc:
            return _json(exc.status, exc.body())
        faults = sb.faults
        if not faults.count_call():
            used, maximum = faults.usage()
            return _json(403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
                         {"Sforce-Limit-Info": f"api-usage={used}/{maximum}"})
        used, maximum = faults.usage()
        limit_header = {"Sforce-Limit-Info": f"api-usage={used}/{maximum}"}
        faults.latency()
        status = faults.server_error()
        if status == 500:
            return _json(500, [{"message": "An unexpected error occurred. Please include this ErrorId if you "
                                "contact support: sandbox-injected", "errorCode": "UNKNOWN_EXCEPTION"}], limit_header)
        if status == 503:
            return _json(503, [{"message": "Server unavailable (injected fault)", "errorCode": "SERVER_UNAVAILABLE"}],
                         limit_header)
        try:
            body = None
            if request.method in WRITE_METHODS:
                data = request.get_data(cache=False)
                if data.strip():
                    try:
                        body = wire.loads(data)
                    except wire.JsonBodyError as exc:
                        raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None
            # As in Salesforce, CDC's changeOrigin names the client given in Sforce-Call-Options.
            client = _call_option_client(request.headers.get("Sforce-Call-Options")) or session.client_id
            call = Call(request.method, segments[1:], request.args.to_dict(), body,
                        Caller(session.user_id, client, version),
                        {k.lower(): v for k, v in request.headers.items()})
            code, result, headers = sb.rest.dispatch(call)
        except ApiError as exc:
            code, result, headers = exc.status, exc.body(), exc.headers
        except RecordError as exc:
            code, result, headers = exc.status, exc.as_api_error().body(), {}
        headers = {**headers, **limit_header}
        return _json(code, result, headers)

    # ----------------------------------------------------------------- admin

    def admin(self, request: Request) -> Response:
        sb = self.sandbox
        remote = request.remote_addr or ""
        try:
            loopback = ipaddress.ip_address(remote.split("%")[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return _json(403, {"error": "the admin API answers loopback clients only"})
        if request.headers.get("X-Sandbox-Admin-Token") != sb.admin_token:
            return _json(401, {"error": "X-Sandbox-Admin-Token is missing or wrong"})
        body: Any = {}
        if request.method in WRITE_METHODS:
            data = request.get_data(cache=False)
            if data.strip():
                try:
                    body = wire.loads(data)
                except wire.JsonBodyError as exc:
                    return _json(400, {"error": f"bad JSON: {exc}"})
        if not isinstance(body, dict):
            return _json(400, {"error": "the body must be a JSON object"})
        name = request.path[len("/_sandbox/"):].strip("/")
        method = request.method
        try:
            result = self._admin_call(name, method, body)
        except (ValueError, TypeError, KeyError) as exc:
            return _json(400, {"error": str(exc)})
        if result is None:
            return _json(404, {"error": f"no admin resource {method} /_sandbox/{name}"})
        return _json(200, result)

    def _admin_call(self, name: str, method: str, body: dict) -> Any:
        sb = self.sandbox
        if name == "stats" and method == "GET":
            return sb.stats()
        if name == "reset" and method == "POST":
            sb.reset(data=str(body.get("data", "none")), seed=int(body.get("seed", 0)))
            return sb.stats()
        if name == "faults":
            if method == "GET":
                return sb.faults.settings.as_dict()
            if method in ("PATCH", "PUT", "POST"):
                return sb.configure_faults(**body).as_dict()
        if name == "api-usage/reset" and method == "POST":
            sb.faults.reset_allocation()
            return sb.stats()
        if name == "tokens/expire" and method == "POST":
            if body.get("token"):
                return {"expired": 1 if sb.auth.expire(str(body["token"])) else 0}
            return {"expired": sb.auth.expire_all()}
        if name == "outbound-messages":
            if method == "GET":
                return [a.as_dict() for a in sb.outbound.actions]
            if method == "POST":
                action = sb.add_outbound_message(**body)
                return action.as_dict()
            if method == "DELETE":
                sb.outbound.clear()
                return []
        if name == "cdc":
            if method == "GET":
                return sb.cdc.config.as_dict() if sb.cdc.config else {}
            if method in ("PUT", "POST"):
                sb.configure_cdc(CdcConfig(**body))
                return sb.cdc.config.as_dict() if sb.cdc.config else {}
            if method == "DELETE":
                sb.configure_cdc(None)
                return {}
        if name == "cdc/gap" and method == "POST":
            return sb.cdc.emit_gap(str(body["change_type"]), str(body["entity"]), body.get("record_ids"))
        if name == "deliveries" and method == "GET":
            return sb.deliveries()
        return None


__all__ = ["SandboxApp", "OutboundMessage"]


def _call_option_client(header: str | None) -> str | None:
    """``Sforce-Call-Options: client=SampleCaseSensitiveToken/100, defaultNamespace=x`` → the client."""
    for option in (header or "").split(","):
        name, _, value = option.strip().partition("=")
        if name.strip().lower() == "client" and value.strip():
            return value.strip()
    return None

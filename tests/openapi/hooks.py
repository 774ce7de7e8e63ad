"""Schemathesis hooks for tests/openapi.rs: who is calling, and the two requests that
need more than a caller's credentials. Nothing here changes what is generated or
checked; each hook only completes a request the way a real client would.

The test passes what it needs in the environment:
  PATGATE_CONTRACT_BASE    the gateway's URL
  PATGATE_CONTRACT_USER    the Deploy user every request signs in as (HTTP Basic)
  PATGATE_CONTRACT_PASSWORD
  PATGATE_CONTRACT_LEAKED_SECRET  leaked.secret, to sign reports of leaked tokens
"""

import base64
import hashlib
import hmac
import json
import os

import requests
import schemathesis
from schemathesis.core import NOT_SET

BASE = os.environ["PATGATE_CONTRACT_BASE"]
USER = os.environ["PATGATE_CONTRACT_USER"]
PASSWORD = os.environ["PATGATE_CONTRACT_PASSWORD"]
LEAKED_SECRET = os.environ["PATGATE_CONTRACT_LEAKED_SECRET"].encode()
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def fresh_session():
    """Signs in as the caller and returns (cookie, CSRF token) of a new session."""
    answer = requests.post(
        f"{BASE}/patgate/api/v1/session",
        json={"username": USER, "password": PASSWORD},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.cookies["patgate_session"], answer.json()["csrf_token"]


@schemathesis.hook
def before_call(context, case, kwargs):
    operation = case.operation.definition.raw.get("operationId")
    if case.headers is None:
        case.headers = {}
    if operation == "session_sign_out":
        # Signing out ends a session: each call gets a session of its own to end, so
        # that the run's own credentials (HTTP Basic) keep working.
        cookie, csrf = fresh_session()
        case.cookies = {**(case.cookies or {}), "patgate_session": cookie}
        case.headers["X-CSRF-Token"] = csrf
        return
    if operation == "leaked_report":
        # A report is signed over its raw body, which only the sender knows: sign the
        # bytes that will be sent, as a secret-scanning service does.
        if case.body is NOT_SET:
            body = b""
        elif isinstance(case.body, bytes):
            body = case.body
        else:
            body = json.dumps(case.body).encode()
        digest = hmac.new(LEAKED_SECRET, body, hashlib.sha256).hexdigest()
        case.headers["X-Patgate-Signature"] = f"sha256={digest}"
        return
    if operation in (
        "session_options",
        "session_sign_in",
        "openapi_document",
        "sso_login",
        "sso_callback",
    ):
        return
    case.headers["Authorization"] = BASIC

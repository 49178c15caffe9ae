"""Schemathesis hooks for Vellum's delivery server.

Device-signed operations are signed exactly as crates/wire/src/auth.rs
`request_signing_bytes` does, by a device this hook enrolls through the public API
(an admin-issued code, then POST /v1/enroll with its own Ed25519 key); admin operations
carry the admin bearer token. Configured by VELLUM_URL and VELLUM_ADMIN_TOKEN.
"""

import base64
import hashlib
import os
import secrets
import time

import requests
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

URL = os.environ["VELLUM_URL"].rstrip("/")
ADMIN_TOKEN = os.environ["VELLUM_ADMIN_TOKEN"].strip()


def signing_bytes(method, path_and_query, device_id, timestamp, nonce, body):
    """The bytes a device signs: mirrors vellum_wire::request_signing_bytes."""
    body_hash = hashlib.sha256(body).hexdigest()
    return (
        f"vellum-request-v1\n{method}\n{path_and_query}\n{device_id}\n"
        f"{timestamp}\n{nonce}\n{body_hash}"
    ).encode()


class Device(requests.auth.AuthBase):
    """Signs the prepared request, so the signature covers the exact bytes sent."""

    def __init__(self):
        self.key = Ed25519PrivateKey.generate()
        public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        user = "st-" + secrets.token_hex(6)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        created = requests.post(f"{URL}/v1/admin/users", json={"name": user}, headers=admin)
        created.raise_for_status()
        enrolled = requests.post(
            f"{URL}/v1/enroll",
            json={
                "user": user,
                "code": created.json()["code"],
                "signature_key": base64.b64encode(public).decode(),
            },
        )
        enrolled.raise_for_status()
        self.device_id = enrolled.json()["device_id"]

    def __call__(self, request):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        timestamp = int(time.time())
        nonce = secrets.token_hex(16)
        to_sign = signing_bytes(
            request.method, request.path_url, self.device_id, timestamp, nonce, body
        )
        request.headers["x-vellum-device"] = self.device_id
        request.headers["x-vellum-timestamp"] = str(timestamp)
        request.headers["x-vellum-nonce"] = nonce
        request.headers["x-vellum-signature"] = base64.b64encode(
            self.key.sign(to_sign)
        ).decode()
        return request


_device = None


def device():
    global _device
    if _device is None:
        _device = Device()
    return _device


def schemes(case):
    names = set()
    for requirement in case.operation.definition.raw.get("security", []):
        names.update(requirement)
    return names


@schemathesis.hook
def process_call_kwargs(context, case, kwargs):
    wanted = schemes(case)
    if "admin_token" in wanted:
        kwargs.setdefault("headers", {})["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    if "device_signature" in wanted:
        kwargs["auth"] = device()

"""What a signed URL signs, checked directly.

The S3 emulator (moto) serves a GET whose signature was altered, and the GCS emulator
(fake-gcs-server) does not check signatures at all, so a URL signed for the wrong method, key
or lifetime would pass every transfer test against them. These tests recompute each signature
from the URL's own inputs with the credentials the emulators are given (AWS SigV4 with an HMAC
of the secret key; GCS V4 with the service account's RSA key) and check the inputs: method,
object key, expiry, signed headers. Azurite does check SAS signatures: a tampered one is
refused, and the permissions and expiry in the URL are checked here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from emulators import AzureEmulator, GCSEmulator, S3Emulator

from cairn.storage import open_storage


def _canonical_request(
    method: str, url: str, prefix: str, host: str | None = None
) -> tuple[str, dict[str, str]]:
    """The V4 canonical request of a query-signed URL (S3 and GCS share the scheme), and the
    URL's query parameters. ``host``: the host signed, when not the URL's."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    signed = {k: v for k, v in params.items() if k != f"{prefix}-Signature"}
    query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(signed.items())
    )
    headers = params[f"{prefix}-SignedHeaders"].split(";")
    assert headers == ["host"], headers  # nothing a client could forget to send
    request = "\n".join(
        [method, parts.path, query, f"host:{host or parts.netloc}", "", "host", "UNSIGNED-PAYLOAD"]
    )
    return request, params


def _string_to_sign(algorithm: str, request: str, params: dict[str, str], prefix: str) -> str:
    scope = params[f"{prefix}-Credential"].split("/", 1)[1]
    digest = hashlib.sha256(request.encode()).hexdigest()
    return "\n".join([algorithm, params[f"{prefix}-Date"], scope, digest])


def _sigv4(secret: str, string_to_sign: str, scope: str) -> str:
    day, region, service, end = scope.split("/")
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, end):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _s3_valid_for(url: str, method: str) -> bool:
    request, params = _canonical_request(method, url, "X-Amz")
    to_sign = _string_to_sign("AWS4-HMAC-SHA256", request, params, "X-Amz")
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    expected = _sigv4(os.environ["AWS_SECRET_ACCESS_KEY"], to_sign, scope)
    return hmac.compare_digest(expected, params["X-Amz-Signature"])


def _gcs_valid_for(url: str, method: str, account: dict[str, str]) -> bool:
    # the GCS signer signs the production host even when GOOGLE_BASE_URL points elsewhere
    request, params = _canonical_request(method, url, "X-Goog", "storage.googleapis.com")
    to_sign = _string_to_sign("GOOG4-RSA-SHA256", request, params, "X-Goog")
    key = serialization.load_pem_private_key(account["private_key"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    try:
        key.public_key().verify(
            bytes.fromhex(params["X-Goog-Signature"]),
            to_sign.encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except Exception:
        return False
    return True


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_s3_urls_sign_the_method_key_and_lifetime_asked_for(
    s3_service: S3Emulator, method: str
) -> None:
    bucket = s3_service.bucket()
    store = open_storage(f"s3://{bucket}/cairn")
    url = store.signed_url("objects/blake3/ab/cd ef", method, expires=321)
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    assert parts.path == f"/{bucket}/cairn/objects/blake3/ab/cd%20ef"
    assert params["X-Amz-Expires"] == "321"
    assert params["X-Amz-Credential"].startswith(f"{os.environ['AWS_ACCESS_KEY_ID']}/")
    issued = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs(issued - datetime.now(UTC)) < timedelta(minutes=5)
    other = "PUT" if method == "GET" else "GET"
    assert _s3_valid_for(url, method)
    assert not _s3_valid_for(url, other)  # a GET URL cannot be used to PUT, and the reverse
    assert not _s3_valid_for(url.replace("cd%20ef", "cd%20eg"), method)  # nor another key
    assert not _s3_valid_for(url.replace("X-Amz-Expires=321", "X-Amz-Expires=9999"), method)


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_gcs_urls_sign_the_method_key_and_lifetime_asked_for(
    gcs_service: GCSEmulator, method: str
) -> None:
    bucket = gcs_service.bucket()
    account = json.loads(gcs_service.service_account)
    store = open_storage(f"gs://{bucket}/cairn")
    url = store.signed_url("objects/blake3/ab/cd ef", method, expires=321)
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    assert parts.path == f"/{bucket}/cairn/objects/blake3/ab/cd%20ef"
    assert params["X-Goog-Expires"] == "321"
    assert params["X-Goog-Credential"].startswith(account["client_email"] + "/")
    other = "PUT" if method == "GET" else "GET"
    assert _gcs_valid_for(url, method, account)
    assert not _gcs_valid_for(url, other, account)
    assert not _gcs_valid_for(url.replace("cd%20ef", "cd%20eg"), method, account)
    assert not _gcs_valid_for(
        url.replace("X-Goog-Expires=321", "X-Goog-Expires=9999"), method, account
    )


def test_azure_urls_grant_only_the_method_asked_for_and_expire(
    azure_service: AzureEmulator,
) -> None:
    store = open_storage(f"az://{azure_service.container()}/cairn")
    store.put("objects/a", b"signed content")
    get = store.signed_url("objects/a", "GET", expires=321)
    put = store.signed_url("objects/b", "PUT", expires=321)
    for url, permission in ((get, "r"), (put, "w")):
        params = dict(parse_qsl(urlsplit(url).query))
        assert params["sp"] == permission and params["sr"] == "b"
        lifetime = datetime.fromisoformat(params["se"]) - datetime.fromisoformat(params["st"])
        assert lifetime == timedelta(seconds=321)
    with urllib.request.urlopen(get, timeout=10) as resp:
        assert resp.read() == b"signed content"
    tampered = get.replace("sp=r", "sp=rw")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(tampered, timeout=10)
    refused.value.close()
    assert refused.value.code == 403  # Azurite checks the signature over the permissions

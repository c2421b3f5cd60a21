"""Single sign-on to the dashboard with OpenID Connect (the authorization code flow with PKCE).

Configured by environment only (the client secret never appears on a command line):
``CAIRN_SERVER_OIDC_ISSUER`` (the provider's issuer URL; its ``/.well-known/openid-configuration``
names the endpoints), ``CAIRN_SERVER_OIDC_CLIENT_ID``, ``CAIRN_SERVER_OIDC_CLIENT_SECRET``,
``CAIRN_SERVER_OIDC_USERNAME_CLAIM`` (default ``preferred_username``; the Cairn user name) and
``CAIRN_SERVER_OIDC_CREATE_USERS`` (``1``: create a user, with no roles, on their first sign-in;
default: the user must exist). The redirect URI to register with the provider is
``<server URL>/login/sso/callback``.

The dashboard's ``GET /login/sso`` (`cairn.dashboard.pages.login`) sends the browser to the
provider with a random ``state``, ``nonce`` and PKCE verifier kept in a short-lived cookie
signed with a key derived from the client secret (so any server process can finish the flow);
``GET /login/sso/callback`` checks the state, exchanges the
code (client secret over HTTP basic auth, the PKCE verifier), verifies the ID token's signature
against the provider's JWKS and its issuer, audience, expiry and nonce (`joserfc`), then starts
a dashboard session for the user the claim names, as a password sign-in does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from cairn.errors import AuthenticationError, CairnError, ConflictError, NotFoundError
from cairn.service.accounts import Accounts, check_user_name

STATE_TTL = 600  # seconds a sign-in may take at the provider
_DISCOVERY_TTL = 3600.0


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    username_claim: str = "preferred_username"
    create_users: bool = False


class Oidc:
    """The relying party: the provider's endpoints and keys (fetched and cached), the start of
    a sign-in and its verified end."""

    def __init__(self, config: OidcConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        self.http = http or httpx.Client(timeout=15, follow_redirects=False)
        self._discovered: tuple[float, dict[str, Any]] | None = None
        self._key = hashlib.sha256(b"cairn-sso-state\0" + config.client_secret.encode()).digest()

    def close(self) -> None:
        self.http.close()

    def _discovery(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._discovered is None or now - self._discovered[0] > _DISCOVERY_TTL:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                answer = self.http.get(url)
                answer.raise_for_status()
                found = answer.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise AuthenticationError(
                    f"the sign-on provider at {self.config.issuer} cannot be reached ({exc}); "
                    "try again, or sign in with a password or API key"
                ) from None
            if found.get("issuer") != self.config.issuer:
                raise AuthenticationError(
                    f"the sign-on provider says its issuer is {found.get('issuer')!r}, not "
                    f"{self.config.issuer!r}: fix CAIRN_SERVER_OIDC_ISSUER"
                )
            self._discovered = (now, found)
        return self._discovered[1]

    # --- the signed state cookie -----------------------------------------------------------
    def _seal(self, data: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def _open(self, sealed: str | None) -> dict[str, Any]:
        body, _, mac = (sealed or "").rpartition(".")
        good = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
        if not body or not hmac.compare_digest(mac, good):
            raise AuthenticationError(
                "the sign-on did not start here, or its cookie was lost: sign in again"
            )
        data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body))
        if data.get("exp", 0) < time.time():
            raise AuthenticationError("the sign-on took too long (10 minutes): sign in again")
        return data

    # --- the flow ----------------------------------------------------------------------------
    def start(self, redirect_uri: str, next_url: str) -> tuple[str, str]:
        """(the provider's authorization URL, the state cookie to set)."""
        found = self._discovery()
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        query = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid profile email",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        url = found["authorization_endpoint"] + "?" + urlencode(query)
        cookie = self._seal(
            {
                "state": state,
                "nonce": nonce,
                "verifier": verifier,
                "next": next_url,
                "exp": time.time() + STATE_TTL,
            }
        )
        return url, cookie

    def finish(
        self, code: str, state: str, cookie: str | None, redirect_uri: str
    ) -> tuple[str, str]:
        """(the user name the verified ID token names, where to go next)."""
        from joserfc import jwt
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        saved = self._open(cookie)
        if not hmac.compare_digest(saved["state"], state or ""):
            raise AuthenticationError("the sign-on's state does not match: sign in again")
        found = self._discovery()
        try:
            answer = self.http.post(
                found["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": saved["verifier"],
                },
                auth=(self.config.client_id, self.config.client_secret),
            )
            tokens = answer.json()
            keys = KeySet.import_key_set(self.http.get(found["jwks_uri"]).json())
        except (httpx.HTTPError, ValueError) as exc:
            raise AuthenticationError(f"the sign-on provider did not answer ({exc})") from None
        if answer.status_code != 200 or "id_token" not in tokens:
            raise AuthenticationError(
                "the sign-on provider refused the code: "
                f"{tokens.get('error_description') or tokens}"
            )
        try:
            token = jwt.decode(tokens["id_token"], keys, algorithms=["RS256", "ES256", "PS256"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.config.issuer},
                aud={"essential": True, "value": self.config.client_id},
                exp={"essential": True},
                nonce={"essential": True, "value": saved["nonce"]},
            ).validate(token.claims)
        except JoseError as exc:
            raise AuthenticationError(f"the sign-on's ID token is not valid: {exc}") from None
        name = token.claims.get(self.config.username_claim)
        if name is None and tokens.get("access_token") and found.get("userinfo_endpoint"):
            # many providers put profile claims only in the UserInfo answer
            name = self._userinfo_claim(found, tokens["access_token"], token.claims["sub"])
        if not isinstance(name, str) or not name:
            raise AuthenticationError(
                f"the sign-on's ID token has no {self.config.username_claim!r} claim to name a "
                "Cairn user (set CAIRN_SERVER_OIDC_USERNAME_CLAIM)"
            )
        return name, str(saved.get("next") or "")

    def _userinfo_claim(self, found: dict[str, Any], access_token: str, sub: str) -> Any:
        try:
            answer = self.http.get(
                found["userinfo_endpoint"], headers={"Authorization": f"Bearer {access_token}"}
            )
            info = answer.json() if answer.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            info = {}
        if info.get("sub") != sub:  # UserInfo must speak of the ID token's subject
            return None
        return info.get(self.config.username_claim)


def find_user(accounts: Accounts, name: str, create: bool) -> tuple[int, str]:
    """(id, name) of the Cairn user the provider names; created (no roles) when allowed."""
    try:
        check_user_name(name)
    except CairnError:
        raise AuthenticationError(f"{name!r} is not a valid Cairn user name") from None
    try:
        info = accounts.get_user(name)
    except NotFoundError:
        if not create:
            raise AuthenticationError(
                f"there is no Cairn user {name!r}: ask an administrator to create it "
                f"(cairn server create-user {name})"
            ) from None
        try:
            info = accounts.create_user(name)
        except ConflictError:  # created by a concurrent first sign-in
            info = accounts.get_user(name)
    return info.id, info.name


__all__ = ["Oidc", "OidcConfig", "find_user"]

"""Signing in with a user name and password, or an API key (either starts a server-side
session: the cookie holds only the session's random token, `cairn.dashboard.auth`), and signing
out (which ends it)."""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from cairn.dashboard.auth import COOKIE, SignIn
from cairn.dashboard.context import Forbidden, Pages, safe_next, same_origin, site_of
from cairn.errors import CairnError

SSO_COOKIE = "cairn_sso"  # the state of a single sign-on until the provider answers

pages = Pages()


@pages.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    site = site_of(request)
    if not site.access_of(request).has_accounts():
        return RedirectResponse(safe_next(next, site.urls.home()), status_code=303)
    return site.page(
        request,
        "login.html",
        None,
        next=safe_next(next, site.urls.home()),
        error=None,
        sso=site.access_of(request).sso(),
    )


@pages.post("/login")
def login(
    request: Request,
    key: Annotated[str, Form()] = "",
    user: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    site = site_of(request)
    target = safe_next(next, site.urls.home())
    if not same_origin(request):
        raise Forbidden("sign in from the dashboard's sign-in page")
    address = request.client.host if request.client else "unknown"
    access = site.access_of(request)
    replacing = request.cookies.get(COOKIE)
    with_password = bool(user.strip()) and not key.strip()
    if with_password:
        outcome = access.sign_in_password(
            user.strip(), password, address=address, replacing=replacing
        )
    else:
        outcome = access.sign_in(key.strip(), address=address, replacing=replacing)
    if outcome.token is None:
        limited = outcome.retry_after is not None
        refused = site.page(
            request,
            "login.html",
            None,
            status=429 if limited else 401,
            next=target,
            sso=access.sso(),
            error=f"Too many failed sign-ins from this address; try again in "
            f"{outcome.retry_after} s."
            if limited
            else "That user name and password do not match (or the user has no password)."
            if with_password
            else "That API key is not valid (mistyped, or revoked).",
        )
        if limited:
            refused.headers["Retry-After"] = str(outcome.retry_after)
        return refused
    return _signed_in(request, target, outcome.token, outcome.max_age)


def _signed_in(request: Request, target: str, token: str, max_age: int) -> Response:
    site = site_of(request)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age,
        path=site.urls.prefix or "/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


def _sso_callback_url(request: Request) -> str:
    """The redirect URI registered with the provider: <dashboard>/login/sso/callback."""
    return str(request.base_url).rstrip("/") + site_of(request).urls.login() + "/sso/callback"


@pages.get("/login/sso")
def sso_start(request: Request, next: str | None = None) -> Response:
    """Off to the single sign-on provider (OpenID Connect), with the flow's state in a
    short-lived signed cookie."""
    site = site_of(request)
    access = site.access_of(request)
    if not access.sso():
        return site.redirect(site.urls.login(), "Single sign-on is not set up on this server.")
    try:
        url, saved = access.sso_start(_sso_callback_url(request), safe_next(next, site.urls.home()))
    except CairnError as exc:
        return site.redirect(site.urls.login(), f"Single sign-on failed: {exc}")
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        SSO_COOKIE,
        saved,
        max_age=600,
        path=site.urls.prefix or "/",
        httponly=True,
        samesite="lax",  # sent with the provider's top-level redirect back here
        secure=request.url.scheme == "https",
    )
    return response


@pages.get("/login/sso/callback")
def sso_callback(request: Request, code: str = "", state: str = "", error: str = "") -> Response:
    """The provider's answer: a session for the user it vouches for, or the sign-in page
    saying why not."""
    site = site_of(request)
    access = site.access_of(request)
    if not access.sso():
        return site.redirect(site.urls.login(), "Single sign-on is not set up on this server.")
    address = request.client.host if request.client else "unknown"
    if error:
        outcome = SignIn(None, error=f"the provider answered {error!r}")
    else:
        outcome = access.sso_finish(
            code,
            state,
            request.cookies.get(SSO_COOKIE),
            _sso_callback_url(request),
            address=address,
            replacing=request.cookies.get(COOKIE),
        )
    if outcome.token is None:
        why = (
            f"too many failed sign-ins; try again in {outcome.retry_after} s"
            if outcome.retry_after is not None
            else outcome.error or "the provider did not vouch for anyone"
        )
        response: Response = site.redirect(site.urls.login(), f"Single sign-on failed: {why}")
    else:
        target = safe_next(outcome.next, site.urls.home())
        response = _signed_in(request, target, outcome.token, outcome.max_age)
    response.delete_cookie(SSO_COOKIE, path=site.urls.prefix or "/")
    return response


@pages.post("/logout")
def logout(request: Request) -> Response:
    site = site_of(request)
    if not same_origin(request):
        raise Forbidden("sign out from a page of the dashboard")
    site.access_of(request).sign_out(request.cookies.get(COOKIE))
    response = RedirectResponse(site.urls.login(), status_code=303)
    response.delete_cookie(
        COOKIE,
        path=site.urls.prefix or "/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response

"""Signing in with a user name and password, or an API key (either starts a server-side
session: the cookie holds only the session's random token, `cairn.dashboard.auth`), and signing
out (which ends it)."""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from cairn.dashboard.auth import COOKIE
from cairn.dashboard.context import Forbidden, Pages, safe_next, same_origin, site_of

pages = Pages()


@pages.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    site = site_of(request)
    if not site.access_of(request).has_accounts():
        return RedirectResponse(safe_next(next, site.urls.home()), status_code=303)
    return site.page(
        request, "login.html", None, next=safe_next(next, site.urls.home()), error=None
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
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        outcome.token,
        max_age=outcome.max_age,
        path=site.urls.prefix or "/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
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

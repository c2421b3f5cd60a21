"""Signing in with an API key (kept in an HttpOnly cookie) and signing out."""

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
    request: Request, key: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""
) -> Response:
    site = site_of(request)
    target = safe_next(next, site.urls.home())
    if not same_origin(request):
        raise Forbidden("sign in from the dashboard's sign-in page")
    viewer = site.access_of(request).viewer(key.strip()) if key.strip() else None
    if viewer is None:
        return site.page(
            request,
            "login.html",
            None,
            status=401,
            next=target,
            error="That API key is not valid (mistyped, or revoked).",
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        key.strip(),
        max_age=30 * 86400,
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
    response = RedirectResponse(site.urls.login(), status_code=303)
    response.delete_cookie(COOKIE, path=site.urls.prefix or "/")
    return response

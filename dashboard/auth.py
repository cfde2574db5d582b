"""Who may read the dashboard's data (DASHBOARD_AUTH).

"function-key" (default; local use): the data routes are at the host's FUNCTION auth level. The page sends
the key the user typed in the `x-functions-key` header (the Functions host accepts a key there or in
`?code=`). Core Tools, like our dev host, does not check keys locally.

"app-service" (production): App Service Authentication with Microsoft Entra ID signs people in (session
cookie) before a request reaches the app, so the browser holds no key. The data routes are then anonymous
at the host level, and each one requires the `X-MS-CLIENT-PRINCIPAL-ID` header: App Service sets it for a
signed-in caller and does not let external requests set it (App Service docs, "Work with user identities in
Azure App Service authentication"). Without App Service Authentication every data call is a 401, never open.

The page and its static files are anonymous in both modes: they hold no data.
"""

from __future__ import annotations

import os

import azure.functions as func

from pipeline.settings import DEFAULTS

FUNCTION_KEY, APP_SERVICE = "function-key", "app-service"
PRINCIPAL_HEADER = "x-ms-client-principal-id"


def configured_mode() -> str:
    """Read when the app is indexed (auth levels are part of each function's metadata); Settings validates
    the same value when the app first reads its settings."""
    return os.environ.get("DASHBOARD_AUTH", DEFAULTS["DASHBOARD_AUTH"])


def data_auth_level(mode: str) -> func.AuthLevel:
    return func.AuthLevel.ANONYMOUS if mode == APP_SERVICE else func.AuthLevel.FUNCTION


def refusal(req: func.HttpRequest, mode: str) -> str | None:
    """Why this caller may not read the data, or None. In function-key mode the host has checked the key."""
    if mode == FUNCTION_KEY:
        return None
    if mode != APP_SERVICE:
        return f"DASHBOARD_AUTH={mode!r} is not a known mode"
    if not (req.headers.get(PRINCIPAL_HEADER) or "").strip():
        return "sign in first: this dashboard is behind App Service Authentication (Entra ID)"
    return None

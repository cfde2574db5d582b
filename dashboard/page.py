"""The page, its static files and the response headers every dashboard response carries.

Content-Security-Policy: everything from this origin only, no inline script or style, no plugins, no
framing. The page's script sets styles through the CSSOM (element.style), which CSP does not restrict;
uPlot does the same.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import azure.functions as func

STATIC = Path(__file__).resolve().parent / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


def static_files() -> dict[str, Path]:
    """name -> file: the page's own files and the vendored ones (vendor/ is flattened: names are unique)."""
    files = {p.name: p for p in (STATIC / "vendor").iterdir() if p.suffix in CONTENT_TYPES}
    files.update({p.name: p for p in STATIC.iterdir() if p.is_file() and p.suffix in (".js", ".css")})
    return files


def html_response(base: str, auth_mode: str) -> func.HttpResponse:
    """index.html with the absolute path of the page filled in (the static files and the JSON routes are
    under it), so the page works whatever the host's route prefix."""
    path = "/" + base.split("://", 1)[-1].split("/", 1)[-1] if "://" in base else base
    text = (STATIC / "index.html").read_text().replace("{{base}}", html.escape(path, quote=True))
    text = text.replace("{{auth}}", html.escape(auth_mode, quote=True))
    return func.HttpResponse(text, status_code=200, mimetype="text/html",
                             headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


def static_response(name: str) -> func.HttpResponse:
    path = static_files().get(name)
    if path is None:
        return json_response({"error": f"no static file {name!r}"}, 404)
    return func.HttpResponse(path.read_bytes(), status_code=200, mimetype=CONTENT_TYPES[path.suffix],
                             headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=300"})


def json_response(body: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json",
                             headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


def file_response(data: bytes, content_type: str, filename: str) -> func.HttpResponse:
    # Served as a download, never rendered in the app's origin: a log line is not markup.
    return func.HttpResponse(data, status_code=200, mimetype=content_type,
                             headers={**SECURITY_HEADERS, "Cache-Control": "no-store",
                                      "Content-Disposition": f'attachment; filename="{filename}"'})

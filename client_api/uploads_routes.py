"""Uploading a large model version in parts (each one request body), for versions above one body's limit.

    POST /api/uploads                   201 {"id": "upl-...", "partBytes": limit of one part}
    PUT  /api/uploads/{id}/parts/{n}    one part (n = 0, 1, ...), staged as block n of the upload's blob
    then POST /api/models/{model}/versions/{version}?upload={id} (empty body) commits parts 0..n-1 in order and
    registers the result.

Parts are uncommitted blocks of UPLOADS_CONTAINER/<id>/upload.bin (the worker identity may read that
container, never write it): nothing is visible until the commit, and
Blob Storage drops uncommitted blocks by itself after a week, so an abandoned upload leaves nothing behind.
"""

from __future__ import annotations

import azure.functions as func

from pipeline.services import settings, storage

from .http import ApiError, body_limit, error_response, json_response
from .registration import MAX_PARTS, new_upload_id, upload_blob


def start_upload(req: func.HttpRequest) -> func.HttpResponse:
    upload_id = new_upload_id()
    base = req.url.split("/api/")[0]
    return json_response({"id": upload_id, "partBytes": int(settings().max_registration_mb * 1024 * 1024),
                          "maxBytes": int(settings().max_staged_mb * 1024 * 1024),
                          "partsUrl": f"{base}/api/uploads/{upload_id}/parts/"}, 201)


def upload_part(req: func.HttpRequest) -> func.HttpResponse:
    s = settings()
    try:
        name = upload_name(req.route_params.get("id", ""))
        raw = req.route_params.get("n", "")
        if not raw.isdigit() or int(raw) >= MAX_PARTS:
            raise ApiError("n", f"{raw!r}: a part number from 0 to {MAX_PARTS - 1}")
        data = body_limit(req.get_body(), s.max_registration_mb, "one part of an upload")
    except ApiError as e:
        return error_response(e)
    blobs = storage()
    blobs.ensure_container(s.uploads_container)
    blobs.stage_block(s.uploads_container, name, int(raw), data)
    return json_response({"id": req.route_params["id"], "part": int(raw), "bytes": len(data)}, 201)


def upload_name(upload_id: str) -> str:
    try:
        return upload_blob(upload_id)
    except ValueError as e:
        raise ApiError("id", str(e)) from None


def commit_upload(upload_id: str) -> str:
    """Commit the parts 0..n-1 of an upload; <container>/<blob> of the result. 4xx naming `upload` when parts
    are missing or too large together."""
    s = settings()
    try:
        name = upload_blob(upload_id)
    except ValueError as e:
        raise ApiError("upload", str(e)) from None
    blobs = storage()
    parts = blobs.uncommitted_blocks(s.uploads_container, name)
    if not parts:
        raise ApiError("upload", f"upload {upload_id!r} has no parts: PUT /api/uploads/{upload_id}/parts/0 first",
                       404)
    missing = sorted(set(range(max(parts) + 1)) - set(parts))
    if missing:
        raise ApiError("upload", f"upload {upload_id!r} lacks part(s) {', '.join(map(str, missing[:5]))}", 409)
    total, limit = sum(parts.values()), int(s.max_staged_mb * 1024 * 1024)
    if total > limit:
        raise ApiError("upload", f"upload {upload_id!r} is {total} bytes; the limit is {limit}", 413)
    blobs.commit_blocks(s.uploads_container, name, range(len(parts)))
    return f"{s.uploads_container}/{name}"

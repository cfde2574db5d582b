"""Publish a run: validate every shard's staged output, then make it visible in one order.

    runs/<run>/results.csv     all rows, written first (readers ignore a run without _SUCCESS)
    runs/<run>/manifest.json   lineage: input + ETag, model version + sha256s, image, shards, exit codes, cost
    runs/<run>/_SUCCESS        the run is complete
    latest/<model>.json        moved last: a reader who follows it never sees a partial run
"""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime

from scoring.blobstore import BlobStore
from scoring.modelstore import ModelStore

from . import naming
from .settings import Settings

RESULT_COLUMNS = ["postcode", "date", "volume", "lower_80", "upper_80", "lower_95", "upper_95", "model",
                  "model_version"]


class PublishError(ValueError):
    pass


def validate_shard_rows(text: str, scored: list[str], horizon: int, where: str) -> list[list[str]]:
    """Rows = scored postcodes x horizon, every volume a finite number >= 0, no unexpected postcode."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header != RESULT_COLUMNS:
        raise PublishError(f"{where}: unexpected columns {header}")
    rows = list(reader)
    expected = set(scored)
    per_postcode: dict[str, int] = {}
    for row in rows:
        pc, volume = row[0], row[2]
        if pc not in expected:
            raise PublishError(f"{where}: rows for postcode {pc}, which the shard did not report as scored")
        try:
            v = float(volume)
        except ValueError:
            raise PublishError(f"{where}: postcode {pc} on {row[1]} has volume {volume!r}") from None
        if not math.isfinite(v) or v < 0:
            raise PublishError(f"{where}: postcode {pc} on {row[1]} has volume {volume}")
        per_postcode[pc] = per_postcode.get(pc, 0) + 1
    wrong = [pc for pc in scored if per_postcode.get(pc) != horizon]
    if wrong:
        raise PublishError(f"{where}: {len(wrong)} postcode(s) do not have {horizon} rows, e.g. {wrong[0]} has "
                           f"{per_postcode.get(wrong[0], 0)}")
    return rows


def publish_run(plan: dict, shards: list[dict], settings: Settings, blobs: BlobStore) -> dict:
    run_id, horizon, container = plan["run_id"], plan["horizon"], settings.results_container
    failed = dict(plan["failed"])
    all_rows: list[list[str]] = []
    accounted: set[str] = set(failed)
    for shard in shards:
        status = shard.get("status")
        if status is None:
            raise PublishError(f"shard {shard['index']} has no output ({shard.get('reason', 'unknown reason')})")
        where = f"shard {shard['index']} ({status['output_prefix']}results.csv)"
        text = blobs.read_bytes(container, status["output_prefix"] + "results.csv").decode()
        all_rows += validate_shard_rows(text, status["scored"], horizon, where)
        failed.update(status["failed"])
        accounted.update(status["scored"])
        accounted.update(status["failed"])
    planned = {pc for s in plan["shards"] for pc in s["postcodes"]} | set(plan["failed"])
    if planned - accounted:
        missing = sorted(planned - accounted)
        raise PublishError(f"{len(missing)} postcode(s) neither scored nor failed, e.g. {missing[0]}")

    prefix = naming.run_prefix(run_id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    writer.writerows(sorted(all_rows, key=lambda r: (r[0], r[1])))
    blobs.write_bytes(container, prefix + "results.csv", out.getvalue().encode(), content_type="text/csv")

    manifest = ModelStore(blobs, settings.models_container).read_manifest(plan["model"], plan["version"])
    scored = sorted(accounted - set(failed))
    published = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run_manifest = {
        "run_id": run_id,
        "state": "completed_with_failures" if failed else "completed",
        "trigger": plan["trigger"],
        "published": published,
        "model": {"name": plan["model"], "version": plan["version"], "r_version": manifest.r_version,
                  "r_packages": manifest.r_packages,
                  "sha256": {pc: manifest.models[pc].sha256 for pc in scored}},
        "input": plan["input"],
        "image": settings.scoring_image,
        "horizon": horizon,
        "rows": len(all_rows),
        "postcodes_scored": len(scored),
        "postcodes_failed": failed,
        "shards": [_shard_summary(s) for s in shards],
        "cost": plan.get("cost", {}),
        "results": f"{container}/{prefix}results.csv",
    }
    blobs.write_json(container, prefix + "manifest.json", run_manifest)
    blobs.write_bytes(container, prefix + "_SUCCESS", published.encode(), content_type="text/plain")
    blobs.write_json(container, naming.latest_pointer(plan["model"]),
                     {"run_id": run_id, "results": prefix + "results.csv", "manifest": prefix + "manifest.json",
                      "published": published})
    return {"results": run_manifest["results"], "manifest": f"{container}/{prefix}manifest.json",
            "rows": len(all_rows), "postcodes_scored": len(scored), "postcodes_failed": failed,
            "state": run_manifest["state"]}


def _shard_summary(shard: dict) -> dict:
    status = shard.get("status") or {}
    return {"index": shard["index"], "state": shard["state"], "attempts": shard["attempts"],
            "scored": len(status.get("scored", [])), "failed": len(status.get("failed", {})),
            "rows": status.get("rows", 0)}

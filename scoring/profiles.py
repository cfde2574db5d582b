"""The shard's model profiles for R (R/model_aware.R): which packages to load, how to type the input, and
where each time-series model's training ended and its step. Written once per shard, read by the driver and
every node."""

from __future__ import annotations

import json
from pathlib import Path

from .modelstore import Manifest
from .steps import parse_step

DEFAULT_TS_MAX_GAP_DAYS = 90  # input may start at most this many days after a time-series model's training end


def write_shard_profiles(manifest: Manifest, postcodes: list[str], path: Path,
                         max_gap_days: int | None) -> Path:
    """Only the postcodes this shard scores; profiles are shared by index (a handful for thousands)."""
    entries = {}
    for pc in postcodes:
        entry = manifest.models[pc]
        if entry.profile is None or manifest.profile_of(pc) is None:
            continue  # registered without profiles (older version, or --no-check): scored as given
        # step None (a manifest from before steps): R steps one day, as it always did.
        step = None if entry.step is None else str(parse_step(entry.step))  # R reads the canonical form only
        entries[pc] = {"profile": entry.profile, "training_end": entry.training_end, "step": step}
    gap = DEFAULT_TS_MAX_GAP_DAYS if max_gap_days is None else max_gap_days
    # An empty JSON object, not a list, when no postcode has a profile: R reads it as a named list.
    path.write_text(json.dumps({"profiles": manifest.profiles, "postcodes": entries or {}, "max_gap_days": gap}))
    return path

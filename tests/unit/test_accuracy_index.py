"""Per-postcode indexes of an evaluation's CSVs (pipeline/accuracy_index.py), on the in-memory store."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest

from dashboard.results_index import ResultsChanged
from pipeline.accuracy import METRIC_COLUMNS, PAIR_COLUMNS, Pair, metric_table, pair_rows, to_csv
from pipeline.accuracy_index import metrics_index, postcode_metrics_row, postcode_pairs, write_accuracy_indexes


def evaluation(mem, postcodes: list[str]) -> dict:
    pairs = [Pair(pc, date(2026, 12, d), d, "v1", 10.0 + d, 11.5 + i, 2.0, {80: (5.0, 20.0)})
             for i, pc in enumerate(postcodes) for d in range(1, 6)]
    metrics_csv, pairs_csv = to_csv(METRIC_COLUMNS, metric_table(pairs)), to_csv(PAIR_COLUMNS, pair_rows(pairs))
    mem.write_bytes("results", "runs/r/accuracy/e/metrics.csv", metrics_csv)
    mem.write_bytes("results", "runs/r/accuracy/e/pairs.csv", pairs_csv)
    return {"metrics": "results/runs/r/accuracy/e/metrics.csv", "pairs": "results/runs/r/accuracy/e/pairs.csv",
            **write_accuracy_indexes(mem, "results", "runs/r/accuracy/e/", metrics_csv, pairs_csv)}


def test_the_metrics_index_points_at_each_postcode_row_only():
    table = to_csv(METRIC_COLUMNS, metric_table([Pair(pc, date(2026, 12, 1), 1, "v1", 1.0, 2.0, None, {})
                                                 for pc in ("8001", "8002")]))
    index = metrics_index(table)
    assert index["columns"] == METRIC_COLUMNS and index["size"] == len(table)
    assert set(index["postcodes"]) == {"8001", "8002"}  # not the overall, version or lead rows
    for pc, (offset, length, rows) in index["postcodes"].items():
        assert rows == 1 and table[offset:offset + length].decode().startswith(f"postcode,{pc},")


def test_one_postcodes_pairs_and_metrics_equal_the_whole_files(mem):
    pointer = evaluation(mem, ["8001", "8002", "8010"])
    whole_pairs = list(csv.DictReader(io.StringIO(mem.read_bytes("results", "runs/r/accuracy/e/pairs.csv").decode())))
    whole_metrics = list(csv.DictReader(io.StringIO(mem.read_bytes("results", "runs/r/accuracy/e/metrics.csv")
                                                    .decode())))
    for pc in ("8001", "8002", "8010"):
        assert postcode_pairs(mem, pointer, pc) == [r for r in whole_pairs if r["postcode"] == pc]
        assert postcode_metrics_row(mem, pointer, pc) == next(
            r for r in whole_metrics if r["level"] == "postcode" and r["key"] == pc)
    assert postcode_pairs(mem, pointer, "9999") == [] and postcode_metrics_row(mem, pointer, "9999") is None


def test_a_rewritten_file_or_a_misplaced_index_is_refused(mem):
    pointer = evaluation(mem, ["8001", "8002"])
    mem.write_bytes("results", "runs/r/accuracy/e/metrics.csv", b"level,key\n" + b"x" * 4000)
    with pytest.raises(ResultsChanged, match="postcode 8002"):
        postcode_metrics_row(mem, pointer, "8002")
    with pytest.raises(ValueError, match="is not beside"):
        postcode_pairs(mem, {**pointer, "pairs_index": "results/elsewhere/pairs.index.json"}, "8001")

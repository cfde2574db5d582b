"""Planning's pass over the input CSV: the checks, and memory that grows with postcodes, not rows."""

from __future__ import annotations

import tracemalloc
from datetime import date, timedelta

import pytest

from pipeline.input_scan import InputError, scan_input


def csv_bytes(lines: list[str], bom: bool = False) -> bytes:
    return (("\ufeff" if bom else "") + "\n".join(lines) + "\n").encode()


def test_counts_rows_per_postcode_and_the_earliest_date():
    rows, earliest = scan_input(csv_bytes(["postcode,date,x", "1002,2026-12-02,1", "1002,2026-12-01,2",
                                           "1004,2026-11-30,3"], bom=True), "in.csv")
    assert rows == {"1002": 2, "1004": 1} and earliest == date(2026, 11, 30)


@pytest.mark.parametrize("lines, message", [
    # an earlier day after a later one moves the postcode's base; the duplicate is still found
    (["postcode,date", "1002,2026-12-05", "1002,2026-12-01", "1004,2026-12-01", "1002,2026-12-05"],
     "line 5: duplicate row for postcode 1002 on 2026-12-05"),
    (["postcode,date", "1002,2026-12-01", "1002,2026-12-01"], "line 3: duplicate row for postcode 1002"),
    (["postcode,date", "1002,20261201"], "line 2: date '20261201' is not YYYY-MM-DD"),
    (["postcode,date", "1002,2026-02-30"], "line 2: date '2026-02-30' is not YYYY-MM-DD"),
    (["postcode,date,x", "1002,2026-12-01"], "line 2: 2 fields where the header has 3"),
    (["postcode,x", "1002,1"], "lacks column(s) date; it has: postcode, x"),
    (["postcode,date"], "has a header but no rows"),
])
def test_refuses_with_the_line_and_the_reason(lines, message):
    with pytest.raises(InputError, match="in.csv") as e:
        scan_input(csv_bytes(lines), "in.csv")
    assert message in str(e.value)


def test_refuses_empty_and_non_utf8():
    with pytest.raises(InputError, match="is empty"):
        scan_input(b"", "in.csv")
    with pytest.raises(InputError, match="is not UTF-8 text"):
        scan_input(b"postcode,date\n1002,2026-12-01\n\xff\xfe,2026-12-02\n", "in.csv")


def test_memory_grows_with_postcodes_not_rows():
    # 1,000 postcodes x 100 days = 100,000 rows (~2.5 MB of CSV). A set of (postcode, date) pairs alone would
    # take ~15 MB; the scan keeps one bitmask per postcode.
    start = date(2027, 1, 1)
    days = [(start + timedelta(days=i)).isoformat() for i in range(100)]
    data = csv_bytes(["postcode,date,holiday"] + [f"{10000 + p},{d},0" for p in range(1000) for d in days])
    tracemalloc.start()
    try:
        rows, earliest = scan_input(data, "in.csv")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(rows) == 1000 and set(rows.values()) == {100} and earliest == start
    assert peak < 1_500_000, f"peak {peak / 1e6:.1f} MB"


def test_visit_sees_every_row_once_in_blocks_of_one_trimmed_postcode():
    lines = ["postcode,date,x", "1002,2026-12-01,a", " 1002 ,2026-12-02,b", "1004,2026-12-01,c",
             "1002,2026-12-03,d", "1004,2026-12-02,e"]
    seen: list[tuple[str, list[str]]] = []
    rows, _ = scan_input(csv_bytes(lines), "in.csv",
                         visit=lambda header, pc, block: seen.append((pc, [r[2] for r in block])))
    assert rows == {"1002": 3, "1004": 2}
    assert sorted(x for _, xs in seen for x in xs) == ["a", "b", "c", "d", "e"]
    assert all(pc in ("1002", "1004") for pc, _ in seen)


@pytest.mark.parametrize("lines, message", [
    # the same postcode written two ways, in adjacent rows: two blocks, one postcode
    (["postcode,date", "1002,2026-12-01", " 1002,2026-12-01"],
     "line 3: duplicate row for postcode 1002 on 2026-12-01 (postcode written ' 1002')"),
    # inside one block, the first problem in line order wins: the bad date before the short row
    (["postcode,date,x", "1002,2026-12-01,1", "1002,2026-13-01,1", "1002,2026-12-03"],
     "line 3: date '2026-13-01' is not YYYY-MM-DD"),
    (["postcode,date,x", "1002,2026-12-01,1", "1002,2026-12-02,1", "1002,2026-12-01,1"],
     "line 4: duplicate row for postcode 1002 on 2026-12-01"),
])
def test_problems_inside_a_block_name_their_line(lines, message):
    with pytest.raises(InputError) as e:
        scan_input(csv_bytes(lines), "in.csv")
    assert message in str(e.value)

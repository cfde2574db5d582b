"""Validating a shard's staged results.csv: the whole-column checks agree with the row-by-row ones on every
input, blocks split anywhere, and the index and the copy staged while validating cover exactly the bytes
validated."""

from __future__ import annotations

import pytest

from pipeline import shard_output
from pipeline.shard_output import RESULT_COLUMNS, BlockCopy, ShardRejected, combined_index, validate_shard

HEADER = ",".join(RESULT_COLUMNS) + "\n"
DAYS = ["2026-12-01", "2026-12-02", "2026-12-03"]
POSTCODES = [f"{8000 + i}" for i in range(40)]


class SmallChunks:
    """The in-memory store, streaming in small odd-sized chunks so that blocks end mid-line."""

    def __init__(self, mem, size: int):
        self.mem, self.size = mem, size

    def info(self, container, name):
        return self.mem.info(container, name)

    def stream(self, container, name, chunk_bytes=None, etag=None):
        return self.mem.stream(container, name, self.size, etag=etag)


def row(pc: str, day: str, volume: str = "10.5", intervals: tuple[str, ...] = ("9", "12", "8", "13")) -> str:
    return ",".join([pc, day, volume, *intervals, "parcels", "v1"]) + "\n"


def good_rows() -> list[str]:
    return [row(pc, d) for pc in POSTCODES for d in DAYS]


def with_change(index: int, line: str) -> list[str]:
    rows = good_rows()
    rows[index] = line
    return rows


CASES = {
    "valid": good_rows(),
    "no intervals at all": [row(pc, d, intervals=("", "", "", "")) for pc in POSTCODES for d in DAYS],
    "intervals for some rows only": with_change(50, row(POSTCODES[16], DAYS[2], intervals=("", "", "", ""))),
    "negative volume": with_change(70, row(POSTCODES[23], DAYS[1], volume="-0.5")),
    "volume NaN": with_change(71, row(POSTCODES[23], DAYS[2], volume="NaN")),
    "volume text": with_change(3, row(POSTCODES[1], DAYS[0], volume="ten")),
    "upper_95 below volume": with_change(90, row(POSTCODES[30], DAYS[0], intervals=("9", "12", "8", "10"))),
    "lower_80 above volume": with_change(91, row(POSTCODES[30], DAYS[1], intervals=("11", "12", "8", "13"))),
    "infinite bound": with_change(92, row(POSTCODES[30], DAYS[2], intervals=("9", "Inf", "8", "13"))),
    "unsorted dates": with_change(1, row(POSTCODES[0], DAYS[2])),
    "duplicate row": with_change(100, row(POSTCODES[33], DAYS[0])),
    "stray postcode": with_change(60, row("9999", DAYS[0])),
    "wrong model": with_change(61, row(POSTCODES[20], DAYS[1]).replace("parcels", "letters")),
    "short row": with_change(62, f"{POSTCODES[20]},{DAYS[2]},1\n"),
    "blank line": with_change(63, "\n"),
    "last newline missing": good_rows()[:-1] + [good_rows()[-1].rstrip("\n")],
    "numbers as float() reads them": with_change(5, row(POSTCODES[1], DAYS[2], volume=" 1_0.5 ", intervals=(
        "+9", "12.", ".8e1", "1E1_3"))),
    "volume with 400 digits": with_change(6, row(POSTCODES[2], DAYS[0], volume="9" * 400)),
    "volume exponent too large": with_change(7, row(POSTCODES[2], DAYS[1], volume="1e999")),
    "negative zero volume": with_change(8, row(POSTCODES[2], DAYS[2], volume="-0")),
    "windows line end": with_change(9, row(POSTCODES[3], DAYS[0]).replace("\n", "\r\n")),
}


def outcome(store, scored: list[str]) -> str:
    try:
        check = validate_shard(store, "staging", "s/results.csv", scored, set(POSTCODES), len(DAYS), "parcels", "v1")
    except ShardRejected as e:
        return f"rejected: {e}"
    return f"ok {check.rows} rows"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("chunk", [61, 997, 1 << 20])
def test_the_worker_layout_and_whole_column_checks_agree_with_the_row_by_row_ones(mem, monkeypatch, case, chunk):
    mem.ensure_container("staging")
    mem.write_bytes("staging", "s/results.csv", (HEADER + "".join(CASES[case])).encode())
    store = SmallChunks(mem, chunk)
    fastest = outcome(store, POSTCODES)
    monkeypatch.setattr(shard_output, "_worker_rows", lambda lines, state: None)  # no block by the layout
    fast = outcome(store, POSTCODES)
    monkeypatch.setattr(shard_output, "_block_is_valid", lambda rows, state: False)  # every block row by row
    slow = outcome(store, POSTCODES)
    assert fastest == fast == slow
    assert fast.startswith("ok") == (case in ("valid", "no intervals at all", "intervals for some rows only",
                                              "numbers as float() reads them", "windows line end"))


@pytest.mark.parametrize("intervals", [("", "", "", ""), ("-1e-05", "1e+16", "-2", "2e+16")], ids=["none", "all"])
def test_the_worker_layout_accepts_what_the_worker_writes(mem, monkeypatch, intervals):
    """Rows as fwrite writes them go by the layout alone: no block falls back to the slower checks."""
    mem.ensure_container("staging")
    numbers = ["0", "12", "3.25", "1e-05", "2.5e+15", "123456789012345.6"]
    rows = [row(pc, d, volume=numbers[i % len(numbers)], intervals=intervals) for i, pc in enumerate(POSTCODES)
            for d in DAYS]
    mem.write_bytes("staging", "s/results.csv", (HEADER + "".join(rows)).encode())
    monkeypatch.setattr(shard_output, "_block_is_valid", lambda rows, state: pytest.fail("fell back"))
    assert outcome(SmallChunks(mem, 333), POSTCODES) == "ok 120 rows"


def test_the_index_and_the_copy_cover_exactly_the_validated_bytes(mem):
    mem.ensure_container("staging")
    data = (HEADER + "".join(good_rows())).encode()
    mem.write_bytes("staging", "s/results.csv", data)
    with BlockCopy(mem, "results", "r/results.csv", block_bytes=500) as copy:
        check = validate_shard(SmallChunks(mem, 113), "staging", "s/results.csv", POSTCODES, set(POSTCODES), 3,
                               "parcels", "v1", copy)
        assert len(check.blocks) > 1 and mem.names("results") == []  # staged, nothing visible yet
        copy.commit([check.blocks])
    body = mem.read_bytes("results", "r/results.csv")
    assert body == data[len(HEADER):] and check.data_bytes == len(body) and check.rows == 120
    for pc in POSTCODES:
        offset, length, rows = check.index[pc]
        assert body[offset:offset + length] == "".join(row(pc, d) for d in DAYS).encode() and rows == 3


@pytest.mark.parametrize("case", ["negative volume", "stray postcode", "last newline missing"])
def test_a_rejected_shard_stages_nothing_that_is_committed(mem, case):
    mem.ensure_container("staging")
    good, bad = POSTCODES[:20], POSTCODES[20:]
    mem.write_bytes("staging", "good/results.csv", (HEADER + "".join(row(pc, d) for pc in good for d in DAYS)).encode())
    mem.write_bytes("staging", "bad/results.csv",
                    (HEADER + "".join(line for line in CASES[case] if line.split(",")[0] not in good)).encode())
    with BlockCopy(mem, "results", "r/results.csv", block_bytes=200) as copy:
        kept = validate_shard(SmallChunks(mem, 97), "staging", "good/results.csv", good, set(good), 3, "parcels",
                              "v1", copy)
        with pytest.raises(ShardRejected):
            validate_shard(SmallChunks(mem, 97), "staging", "bad/results.csv", bad, set(bad), 3, "parcels", "v1",
                           copy)
        copy.write(HEADER.encode())
        header = copy.end_part()
        copy.commit([header, kept.blocks])
    assert mem.text("results", "r/results.csv") == HEADER + "".join(row(pc, d) for pc in good for d in DAYS)


def test_text_that_is_not_utf8_is_rejected(mem):
    mem.ensure_container("staging")
    mem.write_bytes("staging", "s/results.csv", HEADER.encode() + b"\xff\xfe,2026-12-01\n")
    assert outcome(mem, POSTCODES).startswith("rejected: results.csv is not UTF-8 text")


def test_validated_shards_concatenate_into_sorted_results_with_their_index(mem):
    mem.ensure_container("staging")
    halves = [POSTCODES[:25], POSTCODES[25:]]
    checks = []
    with BlockCopy(mem, "results", "r/results.csv", block_bytes=300) as copy:
        copy.write(HEADER.encode())
        header = copy.end_part()
        for i, pcs in enumerate(halves):
            text = HEADER + "".join(row(pc, d) for pc in pcs for d in DAYS)
            mem.write_bytes("staging", f"s{i}/results.csv", text.encode())
            checks.append((f"s{i}/results.csv", validate_shard(mem, "staging", f"s{i}/results.csv", pcs, set(pcs), 3,
                                                               "parcels", "v1", copy)))
        copy.commit([header] + [check.blocks for _, check in checks])
    index, size = combined_index(checks)
    body = mem.read_bytes("results", "r/results.csv")
    assert body == (HEADER + "".join(good_rows())).encode() and size == len(body)
    offset, length, rows = index[POSTCODES[30]]
    assert body[offset:offset + length] == "".join(row(POSTCODES[30], d) for d in DAYS).encode() and rows == 3
    # Shards whose postcodes are not in order one after the other cannot be concatenated.
    assert combined_index(checks[::-1]) is None

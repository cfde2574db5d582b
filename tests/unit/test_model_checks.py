"""Plan checks against the models' prototypes (pipeline/model_checks.py), on manifests written directly: no R."""

from __future__ import annotations

from pipeline.model_checks import check_input_against_models
from scoring.modelstore import Manifest, ModelEntry

GLM = {"class": "glm", "prototype": [{"name": "month", "type": "factor", "levels": ["1", "2", "3"]},
                                     {"name": "temp", "type": "numeric"}]}
TS = {"class": "ets", "time_series": True}


def manifest(profiles: list[dict], entries: dict[str, tuple[int, str | None]]) -> Manifest:
    models = {pc: ModelEntry(blob="packs/00000.bin", offset=0, length=1, sha256="0" * 64, source_sha256="0" * 64,
                             model_class=profiles[i]["class"], slimmed=False, profile=i, training_end=end)
              for pc, (i, end) in entries.items()}
    return Manifest(model="parcels", version="v1", created="2026-11-20T00:00:00Z", r_version="4.2.2",
                    r_packages={}, models=models, profiles=profiles)


def check(m: Manifest, text: str, gap: int = 30) -> dict[str, str]:
    failed, _ = check_input_against_models(text.encode(), m, sorted(m.models), gap, "input x.csv")
    return failed


def test_postcodes_are_trimmed_as_planning_and_the_worker_read_them():
    # Planning counts ' 8001 ' as 8001; the prototype check must judge the same rows, not skip them.
    m = manifest([GLM], {"8001": (0, None), "8002": (0, None)})
    failed = check(m, "postcode,date,month,temp\n 8001 ,2026-12-01,7,1.5\n8002,2026-12-01,2,2.5\n")
    assert failed == {"8001": "column 'month' (fitted as factor) has level(s) not seen in fitting: '7' "
                              "(fitted levels: '1', '2', '3') (input x.csv)"}


def test_every_bad_value_is_named_once_and_good_postcodes_pass():
    m = manifest([GLM], {"8001": (0, None), "8002": (0, None), "8003": (0, None)})
    rows = ["8001,2026-12-01,1,1.5", "8001,2026-12-02,1,abc", "8001,2026-12-03,1,abc", "8001,2026-12-04,2,x",
            "8002,2026-12-01,3,NA", "8003,2026-12-01,9,1", "8003,2026-12-02,1,oops"]
    failed = check(m, "postcode,date,month,temp\n" + "\n".join(rows) + "\n")
    assert set(failed) == {"8001", "8003"}
    assert "(fitted as numeric) has values that are not numbers: 'abc', 'x'" in failed["8001"]
    assert "level(s) not seen in fitting: '9'" in failed["8003"]  # the first column's problem comes first


def test_a_missing_column_fails_every_postcode_of_that_profile_only():
    m = manifest([GLM, TS], {"8001": (0, None), "8002": (1, "2026-11-30")})
    failed = check(m, "postcode,date,month\n8001,2026-12-01,1\n8002,2026-12-01,1\n")
    assert list(failed) == ["8001"] and "input lacks column(s) the model was fitted with: temp" in failed["8001"]


def test_time_series_start_is_checked_against_the_training_end_from_trimmed_rows():
    m = manifest([TS], {"8001": (0, "2026-11-30"), "8002": (0, "2026-12-05"), "8003": (0, "2026-10-01")})
    text = ("postcode,date\n8001 ,2026-12-01\n8002,2026-12-01\n8002,2026-12-02\n 8003,2026-12-01\n")
    failed = check(m, text, gap=30)
    assert set(failed) == {"8002", "8003"}
    assert "on or before the model's training end 2026-12-05" in failed["8002"]
    assert "60 days after the model's training end 2026-10-01" in failed["8003"]

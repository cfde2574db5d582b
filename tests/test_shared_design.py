"""The shared-design path (scoring/R/shared_design.R) against R's own predict(), in real R (rpy2).

Models are fitted in R by tests/shared_design_cases.R, saved with saveRDS, scored by score_chunk (what a
worker node runs) and compared with predict(type = "response") postcode by postcode. `shared` counts the
postcodes the shared design scored: all of them where it applies, none where a model must fall back.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scoring import r_session

pytestmark = pytest.mark.integration  # real R

CASES = Path(__file__).resolve().parent / "shared_design_cases.R"
TOLERANCE = 1e-9
ALL = 6  # postcodes in every case


@pytest.fixture(scope="module")
def r():
    ro = r_session._r()
    ro.r["source"](str(CASES))
    return ro


def check(r, models: str, input_: str = "sd_input()") -> dict:
    out = r.r(f"sd_check({models}, {input_})")
    result = {name: out.rx2(name) for name in out.names}
    return {"shared": int(result["shared"][0]), "scored": list(result["scored"]),
            "max_rel_diff": float(result["max_rel_diff"][0]),
            "failures": {str(k): str(v[0]) for k, v in zip(result["failures"].names or [], result["failures"],
                                                          strict=True)}}


FAMILIES = {
    "poisson_log": "glm(count ~ x + f, family = poisson, data = d)",
    "binomial_logit": "glm(hit ~ x + f, family = binomial, data = d)",
    "binomial_probit": "glm(hit ~ x + f, family = binomial(link = 'probit'), data = d)",
    "gamma_inverse": "glm(amount ~ x + f, family = Gamma, data = d, start = c(1, 0, 0, 0))",
    "gamma_log": "glm(amount ~ x + f, family = Gamma(link = 'log'), data = d)",
    "gaussian_identity": "glm(level ~ x + f, family = gaussian, data = d)",
    "quasipoisson_log": "glm(count ~ x + f, family = quasipoisson, data = d)",
    "lm": "lm(level ~ x + f, data = d)",
    "poisson_formula_offset": "glm(count ~ x + f + offset(log(exposure)), family = poisson, data = d)",
    "poisson_offset_argument": "glm(count ~ x + f, offset = log(exposure), family = poisson, data = d)",
    "lm_offset_argument": "lm(level ~ x, offset = 0.5 * exposure, data = d)",
    "calendar_terms": "glm(count ~ factor(format(date, '%u')) + sin(2 * pi * as.numeric(format(date, '%j')) / 365.25)"
                      " + as.numeric(date) + x, family = poisson, data = d)",
    "interaction": "glm(count ~ x * f, family = poisson, data = d)",
    "factor_levels_fixed": "glm(count ~ factor(f, levels = c('c', 'b', 'a')) + x, family = poisson, data = d)",
}


@pytest.mark.parametrize("slim", [False, True], ids=["fitted", "slim"])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_shared_design_equals_predict(r, name, slim):
    fit = f"function(d) {FAMILIES[name]}"
    result = check(r, f"sd_models({fit}, slim = {str(slim).upper()})")
    assert result["failures"] == {}
    assert result["shared"] == ALL, "every postcode should have been scored from the shared design"
    assert result["max_rel_diff"] <= TOLERANCE


def test_factor_levels_absent_from_some_postcodes_rows(r):
    # Postcodes 2001 and 2002 score only level "a": their model matrix still has the b and c columns (as zeros).
    result = check(r, "sd_models(function(d) glm(count ~ x * f, family = poisson, data = d))",
                   "sd_input(only_a = c('2001', '2002'))")
    assert result["failures"] == {} and result["shared"] == ALL
    assert result["max_rel_diff"] <= TOLERANCE


def test_splines_with_fixed_knots_share_a_design(r):
    r.r("suppressMessages(library(splines))")
    fit = "glm(count ~ ns(x, knots = c(0.5, 1), Boundary.knots = c(0, 2)) + f, family = poisson, data = d)"
    result = check(r, f"sd_models(function(d) {fit})")
    assert result["failures"] == {} and result["shared"] == ALL
    assert result["max_rel_diff"] <= TOLERANCE


def test_data_dependent_bases_do_not_share(r):
    # poly() and ns(df = ) take their basis from each postcode's own training data: no two designs are equal.
    r.r("suppressMessages(library(splines))")
    for fit in ("glm(count ~ poly(x, 2) * f, family = poisson, data = d)",
                "glm(count ~ ns(x, df = 3) + f, family = poisson, data = d)"):
        result = check(r, f"sd_models(function(d) {fit})")
        assert result["shared"] == 0
        assert result["failures"] == {} and result["max_rel_diff"] <= TOLERANCE


def test_model_with_different_terms_falls_back(r):
    models = ("{ms <- sd_models(function(d) glm(count ~ x + f, family = poisson, data = d)); "
              "ms[[3]] <- glm(count ~ x, family = poisson, data = sd_training(3)); ms}")
    result = check(r, models)
    assert result["failures"] == {}
    assert result["shared"] == ALL - 1  # the odd one out went through predict()
    assert result["max_rel_diff"] <= TOLERANCE


def test_rank_deficient_model_with_na_coefficient_falls_back(r):
    models = ("{ms <- sd_models(function(d) glm(count ~ x + f, family = poisson, data = d)); "
              "d <- sd_training(4); d$x2 <- 2 * d$x; "
              "ms[[4]] <- glm(count ~ x + f + I(2 * x), family = poisson, data = d); ms}")
    assert r.r(f"anyNA(coef({models}[[4]]))")[0]
    result = check(r, models)
    assert result["failures"] == {}
    assert result["shared"] == ALL - 1
    assert result["max_rel_diff"] <= TOLERANCE


def test_non_glm_models_fall_back(r):
    # An lm subclass with its own predict method, and a loess: neither may be scored as a plain lm.
    r.r("predict.halved <- function(object, newdata, ...) predict.lm(object, newdata) / 2")
    models = ("{ms <- sd_models(function(d) lm(level ~ x + f, data = d)); "
              "class(ms[[1]]) <- c('halved', 'lm'); class(ms[[2]]) <- c('halved', 'lm'); "
              "ms[[5]] <- loess(level ~ x, data = sd_training(5), "
              "control = loess.control(surface = 'direct')); ms}")
    result = check(r, models)
    assert result["failures"] == {}
    assert result["shared"] == ALL - 3
    assert result["max_rel_diff"] <= TOLERANCE  # predict.halved really was used for 2001 and 2002


def test_formula_with_a_user_function_falls_back(r):
    r.r("sd_shift <- function(v) v - mean(v)")  # not row-wise: its value depends on the other rows
    result = check(r, "sd_models(function(d) glm(count ~ sd_shift(x) + f, family = poisson, data = d))")
    assert result["shared"] == 0
    assert result["failures"] == {} and result["max_rel_diff"] <= TOLERANCE


def test_new_factor_level_fails_only_its_postcode(r):
    result = check(r, "sd_models(function(d) glm(count ~ x + f, family = poisson, data = d))",
                   "sd_input(new_level = '2003')")
    assert list(result["failures"]) == ["2003"] and "new level" in result["failures"]["2003"]
    assert result["shared"] == 0  # the shared build failed, so each postcode went through predict()
    assert len(result["scored"]) == ALL - 1 and result["max_rel_diff"] <= TOLERANCE


def test_checks_still_apply_na_and_negative_volumes(r):
    # NA input gives an NA volume; an lm can predict below zero: both fail their postcode, as in predict().
    result = check(r, "sd_models(function(d) glm(count ~ x + f, family = poisson, data = d))",
                   "sd_input(na_x = '2005')")
    assert list(result["failures"]) == ["2005"] and "NA" in result["failures"]["2005"]
    assert result["shared"] == ALL  # computed by the shared design, then failed by the same check as predict()
    negative = ("{ms <- sd_models(function(d) lm(level ~ x + f, data = d)); "
                "ms[[2]]$coefficients[] <- c(-100, 0, 0, 0); ms}")
    result = check(r, negative)
    assert list(result["failures"]) == ["2002"] and "negative volume" in result["failures"]["2002"]
    assert result["shared"] == ALL


def test_switched_off_by_environment(r):
    r.r("Sys.setenv(SCORING_SHARED_DESIGN = '0')")
    try:
        result = check(r, "sd_models(function(d) glm(count ~ x + f, family = poisson, data = d))")
    finally:
        r.r("Sys.unsetenv('SCORING_SHARED_DESIGN')")
    assert result["shared"] == 0 and result["failures"] == {} and result["max_rel_diff"] <= TOLERANCE


def test_glm_only_shard_never_loads_forecast():
    # A node loads packages for the models its shard has: a glm-only chunk must not pull in forecast. A fresh
    # R (this test session's R may have loaded it for other tests).
    script = (f"source('{r_session.R_DIR / 'score.R'}'); source('{r_session.R_DIR / 'register.R'}'); "
              f"source('{CASES}'); "
              "res <- sd_check(sd_models(function(d) glm(count ~ x + f, family = poisson, data = d))); "
              "cat(res$shared, 'forecast' %in% loadedNamespaces())")
    out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(ALL), "FALSE"]

# The R package against the real local stack, started by tests/test_client_api.py, which passes its URL
# and function key in RSCORING_URL / RSCORING_KEY. Models are fitted here, in R; the service registers them
# in its own R (a container), scores them in containers, and the results must equal R's own predict().

library(rscoring)

url <- Sys.getenv("RSCORING_URL")
key <- Sys.getenv("RSCORING_KEY")
if (!nzchar(url) || !nzchar(key)) stop("run me from tests/test_client_api.py (RSCORING_URL, RSCORING_KEY)")
conn <- scoring_connect(url, key = key)
horizon <- 14
postcodes <- c("10001", "10002", "10003", "10004")

# Poisson glms on a year of synthetic daily volumes with a weekday pattern and a trend. The weekday is a
# factor of names (a CSV column of words reads back as text, which predict() matches to the levels).
set.seed(11)
day_names <- c("mon", "tue", "wed", "thu", "fri", "sat", "sun")
weekday_of <- function(days) factor(day_names[as.integer(format(days, "%u"))], levels = day_names)
history <- do.call(rbind, lapply(seq_along(postcodes), function(i) {
  days <- seq(Sys.Date() - 365, Sys.Date(), by = "day")
  weekday <- weekday_of(days)
  trend <- seq_along(days) / 365
  data.frame(postcode = postcodes[i], date = days, weekday = weekday, trend = trend,
             volume = rpois(length(days), exp(3 + 0.2 * i + 0.3 * (weekday %in% c("mon", "tue")) + 0.1 * trend)))
}))
fits <- lapply(split(history, history$postcode),
               function(d) glm(volume ~ weekday + trend, family = poisson, data = d))
future <- do.call(rbind, lapply(postcodes, function(pc) {
  days <- Sys.Date() + seq_len(horizon)
  data.frame(postcode = pc, date = days, weekday = weekday_of(days),
             trend = (366 + seq_len(horizon)) / 365)
}))

expected_volumes <- function(fits, newdata) {
  unlist(lapply(split(newdata, newdata$postcode), function(d) {
    d <- d[order(d$date), ]
    setNames(as.numeric(predict(fits[[d$postcode[1]]], newdata = d, type = "response")),
             paste(d$postcode, d$date))
  }), use.names = FALSE)
}

test_that("register from R, run from a data frame, wait, fetch: equal to R's predict to 1e-9", {
  reg <- model_register(conn, "parcels", "r1", fits, champion = TRUE)
  expect_s3_class(reg, "scoring_registration")
  expect_identical(reg$state, "registered")
  expect_equal(reg$details$models, 4L)
  expect_match(capture.output(print(reg)), "parcels/r1: registered", fixed = TRUE, all = FALSE)
  versions <- model_versions(conn, "parcels")
  expect_identical(versions$version, "r1")
  expect_true(versions$champion)
  expect_equal(versions$models, 4L)
  expect_s3_class(versions$created, "POSIXct")

  run <- run_start(conn, input = future, model = "parcels", version = "champion", horizon = horizon) |>
    run_wait(timeout = 300, interval = 0.3)
  expect_identical(run$state, "completed")
  expect_match(capture.output(print(run)), paste0("<scoring run ", run$id, "> completed"), fixed = TRUE,
               all = FALSE)
  results <- run_results(run)
  expect_s3_class(results$date, "Date")
  expect_equal(nrow(results), length(postcodes) * horizon)
  results <- results[order(results$postcode, results$date), ]
  expect_identical(unique(results$postcode), postcodes)
  expect_lt(max(abs(results$volume - expected_volumes(fits, future))), 1e-9)
  expect_identical(unique(results$model_version), "r1")
  manifest <- attr(results, "manifest")
  expect_identical(manifest$model$version, "r1")
  expect_identical(manifest$run_id, run$id)
  expect_identical(nrow(run_failures(conn, run$id)), 0L)

  latest <- model_latest(conn, "parcels")
  expect_identical(attr(latest, "manifest")$run_id, run$id)
  expect_equal(latest$volume[order(latest$postcode, latest$date)], results$volume)
  expect_true(run$id %in% run_list(conn)$id)
  expect_error(run_cancel(conn, run), "already finished", class = "scoring_error")
  expect_error(run_retry(conn, run), "no failed postcodes", class = "scoring_error")

  pdf(NULL)
  drawn <- forecast_plot(results, postcodes[1:2], engine = "base")
  dev.off()
  expect_identical(unique(drawn$postcode), postcodes[1:2])

  # Accuracy: actuals for all but the last day of one postcode, off the forecast by known amounts.
  actuals <- results[!(results$postcode == "10004" & results$date == max(results$date)),
                     c("postcode", "date", "volume")]
  actuals$volume <- actuals$volume + sin(seq_len(nrow(actuals))) * 3
  expect_error(run_accuracy(conn, run), "no accuracy", class = "scoring_error")
  acc <- run_evaluate(conn, run, actuals, timeout = 120, interval = 0.3)
  expect_s3_class(acc, "scoring_accuracy")
  expect_identical(acc$run_id, run$id)
  expect_identical(acc$rows, nrow(actuals))
  forecast <- results$volume[match(paste(actuals$postcode, actuals$date), paste(results$postcode, results$date))]
  expect_lt(abs(acc$overall$mae - mean(abs(actuals$volume - forecast))), 1e-9)
  expect_lt(abs(acc$overall$me - mean(actuals$volume - forecast)), 1e-9)
  expect_identical(acc$model_version$model_version, "r1")
  expect_identical(acc$postcode$postcode, postcodes)
  per_postcode <- tapply(abs(actuals$volume - forecast), actuals$postcode, mean)
  expect_lt(max(abs(acc$postcode$mae - per_postcode[acc$postcode$postcode])), 1e-9)
  expect_identical(acc$lead$lead, seq_len(horizon))
  expect_identical(acc$lead$n[horizon], length(postcodes) - 1L)
  pairs <- acc$pairs
  expect_s3_class(pairs$date, "Date")
  expect_equal(nrow(pairs), nrow(actuals))
  expect_lt(max(abs(pairs$actual - actuals$volume[match(paste(pairs$postcode, pairs$date),
                                                        paste(actuals$postcode, actuals$date))])), 1e-9)
  expect_identical(run_accuracy(run)$evaluation, acc$evaluation)
  expect_error(run_evaluate(conn, run, data.frame(postcode = "10001", date = Sys.Date(), volume = -1)),
               "volume '-1' is not a number >= 0", fixed = TRUE, class = "scoring_error")
})

test_that("a dry run plans without starting anything", {
  plan <- run_start(conn, input = future[future$postcode != "10004", ], model = "parcels", horizon = horizon,
                    dry_run = TRUE)
  expect_s3_class(plan, "scoring_plan")
  # Every postcode of the version is planned; the one without input rows is listed as failed, never dropped.
  expect_equal(plan$postcodes, 4L)
  expect_match(unlist(plan$failed["10004"]), "no input rows", fixed = TRUE)
  expect_true(plan$dryRun)
  expect_match(capture.output(print(plan)), "nothing was started", fixed = TRUE, all = FALSE)
})

test_that("failed postcodes come back with their reasons; retry reruns them", {
  bad <- future
  bad$trend[bad$postcode == "10004"] <- NA  # predict gives NA: that postcode fails, the others are scored
  run <- run_wait(conn, run_start(conn, input = bad, model = "parcels", horizon = horizon), interval = 0.3)
  expect_identical(run$state, "completed_with_failures")
  failures <- run_failures(conn, run)
  expect_identical(failures$postcode, "10004")
  expect_match(failures$reason, "NA", fixed = TRUE)
  expect_equal(nrow(run_results(conn, run)), 3 * horizon)
  retry <- run_retry(conn, run)
  expect_identical(retry$retry_of, run$id)
  expect_identical(run_wait(retry, interval = 0.3)$state, "completed_with_failures")  # still NA input
  merged <- run_results(retry)  # a retry publishes into the run it retries
  expect_identical(attr(merged, "manifest")$run_id, run$id)
  expect_length(attr(merged, "manifest")$revisions, 2L)
})

test_that("promote and roll back the champion", {
  fits2 <- lapply(fits, function(f) { f$coefficients <- f$coefficients * 1.01; f })
  reg <- model_register(conn, "parcels", "r2", fits2, part_size = 20000)  # uploaded in parts
  expect_identical(reg$state, "registered")
  expect_identical(model_versions(conn, "parcels")$champion, c(TRUE, FALSE))
  model_promote(conn, "parcels", "r2")
  expect_identical(model_versions(conn, "parcels")$champion, c(FALSE, TRUE))
  model_rollback(conn, "parcels")
  expect_identical(model_versions(conn, "parcels")$champion, c(TRUE, FALSE))
  expect_error(model_rollback(conn, "parcels"), "oldest version")
  expect_error(model_promote(conn, "parcels", "r9"), "no version 'r9'", class = "scoring_error")
})

test_that("refusals come back as R errors that say why", {
  expect_error(model_register(conn, "parcels", "r1", fits), "already has version 'r1'", class = "scoring_error")
  expect_error(model_register(conn, "parcels", "r3", list(abc = fits[[1]])), "abc.rds", class = "scoring_error")
  corrupt <- tempfile()
  dir.create(corrupt)
  writeBin(as.raw(1:100), file.path(corrupt, "10001.rds"))
  expect_error(model_register(conn, "parcels", "r3", corrupt), "do not load in R", class = "scoring_error")
  expect_error(model_register(conn, "parcels", "r3", fits[1],
                              scorer = function(model, newdata) notapkg::predict_it(model, newdata)),
               "notapkg", class = "scoring_error")
  expect_false("r3" %in% model_versions(conn, "parcels")$version)
  expect_error(run_start(conn, input = future, model = "parcels", version = "r9"), "r9",
               class = "scoring_error")
  expect_error(run_results(conn, "run-0123456789abcdef0123"), "no run", class = "scoring_error")
  stale <- future
  stale$date <- stale$date - 30
  expect_error(input_upload(conn, stale), "past", class = "scoring_error")
  wrong <- scoring_connect(url, key = "not-the-key")
  expect_error(model_versions(wrong, "parcels"), "refused the function key", class = "scoring_error")
})

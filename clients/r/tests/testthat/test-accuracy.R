# run_evaluate / run_accuracy against a local fake of the service (webfakes: a real HTTP server in a
# subprocess). The fake answers with the shapes of pipeline/accuracy_api.py and client_api/results_routes.py;
# tests/r/test-live.R checks the same functions against the real stack.

fake_accuracy_service <- function() {
  app <- webfakes::new_app()
  app$use(webfakes::mw_raw(type = "text/csv"))
  app$locals$polls <- 0L
  app$post("/api/runs/:id/evaluate", function(req, res) {
    if (req$params$id == "run-none") {
      return(res$set_status(404L)$send_json(list(error = "no published run 'run-none'"), auto_unbox = TRUE))
    }
    app$locals$body <- rawToChar(req$raw)
    app$locals$type <- req$get_header("Content-Type")
    app$locals$polls <- 0L
    res$set_status(202L)$send_json(list(id = "eval-new", run_id = req$params$id,
                                        actuals = "inputs/actuals/x.csv"), auto_unbox = TRUE)
  })
  app$get("/api/echo-actuals", function(req, res) {
    res$send_json(list(body = app$locals$body, type = app$locals$type), auto_unbox = TRUE)
  })
  app$get("/api/runs/:id/accuracy", function(req, res) {
    app$locals$polls <- app$locals$polls + 1L
    # The new evaluation shows up on the third poll; before that the previous one is served.
    evaluation <- if (req$params$id == "run-stale" || app$locals$polls < 3L) "eval-old" else "eval-new"
    res$send_json(list(run_id = req$params$id, evaluation = evaluation, computed = "2030-01-05T10:11:12Z",
                       postcodes = 2L, rows = 3L, metrics = "results/x/metrics.csv",
                       pairs = "results/x/pairs.csv", definitions = "error = actual - forecast"),
                  auto_unbox = TRUE)
  })
  app$get("/api/runs/:id/accuracy/:table", function(req, res) {
    if (req$params$table == "metrics") {
      res$set_type("text/csv")$send(paste0(
        "level,key,n,me,mae,rmse,wape,mase,n_80,coverage_80,winkler_80,n_95,coverage_95,winkler_95\n",
        "overall,all,3,0.5,1.5,1.6,0.1,NA,3,0.6666666666666666,4.5,0,NA,NA\n",
        "model_version,v1,3,0.5,1.5,1.6,0.1,NA,3,0.6666666666666666,4.5,0,NA,NA\n",
        "postcode,01234,2,1.0,1.0,1.0,0.05,NA,2,1.0,2.0,0,NA,NA\n",
        "postcode,99999,1,-0.5,2.5,2.5,0.2,NA,1,0.0,9.5,0,NA,NA\n",
        "lead,10,1,0.0,0.0,0.0,0.0,NA,1,1.0,2.0,0,NA,NA\n",
        "lead,2,1,1.0,1.0,1.0,0.1,NA,1,1.0,2.0,0,NA,NA\n"))
    } else if (req$params$table == "pairs") {
      res$set_type("text/csv")$send(paste0(
        "postcode,date,lead,model_version,forecast,actual,error,lower_80,upper_80,lower_95,upper_95\n",
        "01234,2030-01-01,1,v1,10.0,11.0,1.0,9.0,12.0,NA,NA\n",
        "01234,2030-01-02,2,v1,10.0,11.0,1.0,9.0,12.0,NA,NA\n",
        "99999,2030-01-01,1,v1,10.0,7.5,-2.5,9.0,12.0,NA,NA\n"))
    } else {
      res$set_status(404L)$send_json(list(error = "table: 'x' : use one of metrics, pairs", field = "table"),
                                     auto_unbox = TRUE)
    }
  })
  webfakes::local_app_process(app, .local_envir = parent.frame())
}

test_that("actuals go up as CSV with ISO dates and exact doubles; the wait ends on this evaluation", {
  service <- fake_accuracy_service()
  conn <- scoring_connect(sub("/$", "", service$url()), key = "k1")
  actuals <- data.frame(postcode = c("01234", "99999"), date = as.Date(c("2030-01-01", "2030-01-02")),
                        volume = c(0.1 + 0.2, 7), other = c("x", "y"))
  acc <- run_evaluate(conn, "run-abc", actuals, interval = 0.05)
  sent <- rscoring:::request_json(conn, "GET", "echo-actuals")
  expect_match(sent$type, "text/csv", fixed = TRUE)
  lines <- strsplit(sent$body, "\n")[[1]]
  expect_identical(lines[1], "postcode,date,volume")
  expect_identical(lines[2], "01234,2030-01-01,0.30000000000000004")  # read back as the same double
  expect_identical(lines[3], "99999,2030-01-02,7")
  expect_identical(acc$evaluation, "eval-new")  # not the older one served by the first polls
  expect_s3_class(acc, "scoring_accuracy")
  expect_s3_class(acc$computed, "POSIXct")
})

test_that("accuracy comes back as data frames: overall, per version, postcode and lead, and the pairs", {
  service <- fake_accuracy_service()
  conn <- scoring_connect(sub("/$", "", service$url()), key = "k1")
  acc <- run_accuracy(conn, "run-abc")
  expect_identical(nrow(acc$overall), 1L)
  expect_equal(acc$overall$mae, 1.5)
  expect_identical(acc$overall$n, 3L)
  expect_true(is.na(acc$overall$mase))
  expect_identical(acc$model_version$model_version, "v1")
  expect_identical(acc$postcode$postcode, c("01234", "99999"))  # leading zeros kept
  expect_equal(acc$postcode$me, c(1, -0.5))
  expect_identical(acc$lead$lead, c(2L, 10L))  # numeric order, not text order
  expect_s3_class(acc$pairs$date, "Date")
  expect_identical(acc$pairs$postcode, c("01234", "01234", "99999"))
  expect_equal(acc$pairs$error, acc$pairs$actual - acc$pairs$forecast)
  expect_true(all(is.na(acc$pairs$lower_95)))
  expect_match(capture.output(print(acc))[1], "<accuracy of run run-abc> 3 forecast/actual pairs", fixed = TRUE)
})

test_that("bad actuals are refused in R; service refusals and time-outs are scoring_errors", {
  service <- fake_accuracy_service()
  conn <- scoring_connect(sub("/$", "", service$url()), key = "k1")
  expect_error(run_evaluate(conn, "run-abc", data.frame(postcode = "1", date = "2030-01-01")),
               "lacks column(s) volume", fixed = TRUE)
  expect_error(run_evaluate(conn, "run-abc", list(postcode = "1")), "must be a data frame")
  expect_error(run_evaluate(conn, "run-abc", data.frame(postcode = character(), date = character(),
                                                        volume = numeric())), "no rows")
  actuals <- data.frame(postcode = "1", date = "2030-01-01", volume = 1)
  expect_error(run_evaluate(conn, "run-none", actuals), "no published run 'run-none' (HTTP 404",
               fixed = TRUE, class = "scoring_error")
  expect_error(run_evaluate(conn, "run-stale", actuals, timeout = 0.3, interval = 0.05),
               "published no accuracy within", class = "scoring_error")
  started <- run_evaluate(conn, "run-abc", actuals, wait = FALSE)
  expect_identical(started$id, "eval-new")
})

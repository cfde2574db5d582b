# The client against a local fake of the service (webfakes: a real HTTP server in a subprocess). The
# real service is exercised by the repository's test suite (tests/test_r_client.py), which runs
# tests/r/ against the local stack; here only the client's side of the HTTP contract is checked.

fake_service <- function() {
  app <- webfakes::new_app()
  app$use(webfakes::mw_raw(type = c("application/gzip", "text/csv")))
  app$get("/api/runs/:id/results", function(req, res) {
    if (!identical(req$get_header("x-functions-key"), "k1")) return(res$set_status(401L)$send(""))
    res$set_type("text/csv")$send(paste0(
      "postcode,date,volume,lower_80,upper_80,lower_95,upper_95,model,model_version\n",
      "01234,2030-01-01,1.5,,,,,parcels,v1\n01234,2030-01-02,2.25,,,,,parcels,v1\n"))
  })
  app$get("/api/runs/:id/manifest", function(req, res) {
    res$send_json(list(run_id = req$params$id, state = "completed",
                       url_had_key = grepl("k1", req$url, fixed = TRUE)), auto_unbox = TRUE)
  })
  app$get("/api/models/:model/versions", function(req, res) {
    res$set_status(404L)$send_json(list(error = "model 'nope' has no versions", field = "model"),
                                   auto_unbox = TRUE)
  })
  app$put(webfakes::new_regexp("^/api/inputs/(?<name>[^/]+)$"), function(req, res) {
    res$set_status(201L)$send_json(list(input = paste0("uploads/", req$params$name),
                                        body = rawToChar(req$raw)), auto_unbox = TRUE)
  })
  app$get("/api/echo", function(req, res) {
    res$send_json(list(key = req$get_header("x-functions-key") %||% "",
                       auth = req$get_header("Authorization") %||% ""), auto_unbox = TRUE)
  })
  app$post("/api/models/:model/versions/:version", function(req, res) {
    archive <- tempfile(fileext = ".tar.gz")
    writeBin(req$raw, archive)
    res$set_status(202L)$send_json(list(id = "reg-0123456789abcdef0123", model = req$params$model,
                                        version = req$params$version, query = req$query_string,
                                        files = sort(utils::untar(archive, list = TRUE))),
                                   auto_unbox = TRUE)
  })
  webfakes::local_app_process(app, .local_envir = parent.frame())
}

`%||%` <- function(a, b) if (is.null(a)) b else a

test_that("results come back with Date columns and the manifest, the key in a header only", {
  service <- fake_service()
  conn <- scoring_connect(sub("/$", "", service$url()), key = "k1")
  results <- run_results(conn, "run-abc")
  expect_s3_class(results$date, "Date")
  expect_equal(results$date, as.Date(c("2030-01-01", "2030-01-02")))
  expect_identical(results$postcode, c("01234", "01234"))  # leading zeros kept
  expect_equal(results$volume, c(1.5, 2.25))
  expect_true(all(is.na(results$lower_95)))
  expect_identical(attr(results, "manifest")$run_id, "run-abc")
  expect_false(attr(results, "manifest")$url_had_key)
})

test_that("a wrong key and a service error become R errors with the service's words", {
  service <- fake_service()
  wrong <- scoring_connect(sub("/$", "", service$url()), key = "other")
  expect_error(run_results(wrong, "run-abc"), "refused the function key", class = "scoring_error")
  conn <- scoring_connect(sub("/$", "", service$url()), key = "k1")
  err <- tryCatch(model_versions(conn, "nope"), error = function(e) e)
  expect_s3_class(err, "scoring_error")
  expect_match(conditionMessage(err), "model 'nope' has no versions (HTTP 404", fixed = TRUE)
  expect_identical(err$field, "model")
})

test_that("a token is sent as a bearer header, refreshed by calling the function", {
  service <- fake_service()
  calls <- 0
  conn <- scoring_connect(sub("/$", "", service$url()), key = NULL,
                          token = function() { calls <<- calls + 1; paste0("t", calls) })
  first <- rscoring:::request_json(conn, "GET", "echo")
  second <- rscoring:::request_json(conn, "GET", "echo")
  expect_identical(c(first$auth, second$auth), c("Bearer t1", "Bearer t2"))
  expect_identical(first$key, "")
  expect_false(any(grepl("t1", capture.output(print(conn)))))
})

test_that("register uploads one tar.gz of <postcode>.rds and scorer.R", {
  service <- fake_service()
  conn <- scoring_connect(sub("/$", "", service$url()), key = "k1")
  fits <- list(`01234` = lm(dist ~ speed, cars), `05678` = lm(dist ~ 1, cars))
  reg <- model_register(conn, "parcels", "v2", fits, champion = TRUE, wait = FALSE,
                        scorer = function(model, newdata) predict(model, newdata))
  expect_s3_class(reg, "scoring_registration")
  expect_identical(unlist(reg$files), c("01234.rds", "05678.rds", "scorer.R"))
  expect_identical(reg$query, "champion=true")
  expect_error(model_register(conn, "parcels", "v2", list(lm(dist ~ speed, cars))), "named list")
})

test_that("connections refuse plain http to other machines and missing credentials", {
  expect_error(scoring_connect("http://example.org", key = "k"), "unencrypted")
  expect_error(scoring_connect("https://example.org", key = ""), "function key")
  conn <- scoring_connect("https://example.org/api/", key = "secret-key")
  expect_identical(conn$url, "https://example.org")
  expect_false(any(grepl("secret-key", capture.output(print(conn), str(conn)))))
})

test_that("forecast_plot draws bands with base graphics and with ggplot2", {
  results <- data.frame(postcode = rep(c("1000", "2000"), each = 5), date = Sys.Date() + rep(1:5, 2),
                        volume = 1:10, lower_80 = 0:9, upper_80 = 2:11, lower_95 = NA, upper_95 = NA)
  pdf(NULL)
  on.exit(dev.off())
  drawn <- forecast_plot(results, "2000", engine = "base")
  expect_identical(unique(drawn$postcode), "2000")
  expect_error(forecast_plot(results, "3000"), "not in the results")
  skip_if_not_installed("ggplot2")
  plot <- forecast_plot(results, engine = "ggplot2")
  expect_s3_class(plot, "ggplot")
  expect_length(plot$layers, 2L)  # the 80% band and the line; no 95% band without values
})

test_that("a data frame is uploaded as CSV with ISO dates, leaving the random stream alone", {
  service <- fake_service()
  conn <- scoring_connect(sub("/$", "", service$url()), key = "k1")
  set.seed(1)
  before <- .Random.seed
  up <- input_upload(conn, data.frame(postcode = c("01234", "01234"), date = as.Date("2030-01-01") + 0:1,
                                      trend = c(0.5, NA)))
  expect_identical(.Random.seed, before)
  expect_match(up$input, "^uploads/r-[0-9T]+-[0-9a-f]+[.]csv$")
  expect_identical(strsplit(up$body, "\n")[[1]],
                   c("\"postcode\",\"date\",\"trend\"", "\"01234\",\"2030-01-01\",0.5",
                     "\"01234\",\"2030-01-02\","))
  expect_error(input_upload(conn, data.frame(postcode = "1")), "lacks column\\(s\\) date")
})

# Accuracy: submit the actual volumes of a published run, read the metrics and the forecast/actual pairs.

run_evaluate <- function(conn, run, actuals, wait = TRUE, timeout = 300, interval = 0.5) {
  r <- as_run(conn, run)
  if (!is.data.frame(actuals)) stop("actuals must be a data frame", call. = FALSE)
  missing <- setdiff(c("postcode", "date", "volume"), names(actuals))
  if (length(missing)) {
    stop("actuals lacks column(s) ", paste(missing, collapse = ", "),
         " (it needs postcode, date and volume)", call. = FALSE)
  }
  if (!nrow(actuals)) stop("actuals has no rows", call. = FALSE)
  # %.17g: the service reads back the very doubles R holds, so metrics match R's own arithmetic.
  volume <- as.numeric(actuals$volume)
  text <- paste0("postcode,date,volume\n",
                 paste(csv_field(as.character(actuals$postcode)), format(as.Date(actuals$date), "%Y-%m-%d"),
                       ifelse(is.na(volume), "", sprintf("%.17g", volume)), sep = ",", collapse = "\n"),
                 "\n")
  started <- response_json(scoring_request(r$conn, "POST", paste0("runs/", r$id, "/evaluate"),
                                           body = text, content_type = "text/csv"))
  if (!isTRUE(wait)) return(invisible(started))
  deadline <- Sys.time() + timeout
  repeat {
    found <- tryCatch(accuracy_pointer(r$conn, r$id), scoring_error = function(e) NULL)
    if (!is.null(found) && identical(found$evaluation, started$id)) break
    if (Sys.time() > deadline) {
      stop(structure(class = c("scoring_error", "error", "condition"),
                     list(message = sprintf(paste("evaluation %s of run %s published no accuracy within %s s",
                                                  "(did the actuals share postcodes and dates with the",
                                                  "forecasts?)"), started$id, r$id, timeout),
                          call = NULL, status = NA_integer_, field = NULL)))
    }
    Sys.sleep(interval)
  }
  run_accuracy(r$conn, r$id)
}

run_accuracy <- function(conn, run) {
  r <- as_run(conn, run)
  pointer <- accuracy_pointer(r$conn, r$id)
  metrics <- metrics_frame(accuracy_csv(r$conn, r$id, "metrics"))
  pairs <- pairs_frame(accuracy_csv(r$conn, r$id, "pairs"))
  by_level <- function(level, key) {
    out <- metrics[metrics$level == level, setdiff(names(metrics), "level"), drop = FALSE]
    names(out)[names(out) == "key"] <- key
    rownames(out) <- NULL
    out
  }
  by_lead <- by_level("lead", "lead")
  by_lead$lead <- as.integer(by_lead$lead)
  by_lead <- by_lead[order(by_lead$lead), , drop = FALSE]
  rownames(by_lead) <- NULL
  overall <- by_level("overall", "group")
  structure(list(run_id = pointer$run_id, evaluation = pointer$evaluation,
                 computed = as.POSIXct(pointer$computed, format = "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"),
                 postcodes = pointer$postcodes, rows = pointer$rows,
                 overall = overall[, setdiff(names(overall), "group"), drop = FALSE],
                 model_version = by_level("model_version", "model_version"),
                 postcode = by_level("postcode", "postcode"), lead = by_lead, pairs = pairs,
                 actuals = pointer$actuals, definitions = pointer$definitions),
            class = "scoring_accuracy")
}

print.scoring_accuracy <- function(x, ...) {
  cat("<accuracy of run ", x$run_id, "> ", x$rows, " forecast/actual pairs over ", x$postcodes,
      " postcode(s), computed ", format(x$computed, "%Y-%m-%d %H:%M:%S UTC"), "\n", sep = "")
  print(x$overall, row.names = FALSE)
  invisible(x)
}

accuracy_pointer <- function(conn, id) request_json(conn, "GET", paste0("runs/", id, "/accuracy"))

accuracy_csv <- function(conn, id, table) {
  response <- scoring_request(conn, "GET", paste0("runs/", id, "/accuracy/", table), accept = "text/csv")
  rawToChar(response$content)
}

csv_field <- function(x) ifelse(grepl("[\",\n]", x), paste0("\"", gsub("\"", "\"\"", x), "\""), x)

metrics_frame <- function(text) {
  out <- utils::read.csv(text = text, colClasses = c(level = "character", key = "character"),
                         stringsAsFactors = FALSE, na.strings = "NA")
  for (column in setdiff(names(out), c("level", "key"))) {
    out[[column]] <- if (column == "n" || startsWith(column, "n_")) as.integer(out[[column]])
                     else as.numeric(out[[column]])
  }
  out
}

pairs_frame <- function(text) {
  out <- utils::read.csv(text = text, colClasses = c(postcode = "character", date = "character",
                                                     model_version = "character"),
                         stringsAsFactors = FALSE, na.strings = "NA")
  out$date <- as.Date(out$date)
  out$lead <- as.integer(out$lead)
  for (column in setdiff(names(out), c("postcode", "date", "lead", "model_version"))) {
    out[[column]] <- as.numeric(out[[column]])
  }
  out
}

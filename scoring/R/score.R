# The scoring contract, R side. Sourced into the rpy2 session and into every worker node.
#
# For each postcode: newdata = that postcode's input rows (postcode, date, features). Scored by the first
# rule that applies: 1. the version's scorer.R `score(model, newdata)`; 2. forecast::forecast for time-series
# models; 3. predict(type = "response"), or predict without `type` where the method does not take it.

.scoring <- new.env()
.scoring$newdata <- list()
.scoring$user_score <- NULL
.scoring$results <- list()
.scoring$horizon <- 0

TS_CLASSES <- c("ets", "Arima", "ARIMA", "forecast_ARIMA", "tbats", "bats", "StructTS", "HoltWinters",
                "nnetar", "stlm", "ar", "baggedModel", "fracdiff", "arfima")
INTERVAL_COLUMNS <- c("lower_80", "upper_80", "lower_95", "upper_95")

# Load the shard's input once; keep one data.frame per postcode. Errors here are fatal for the shard.
load_input <- function(path, postcodes) {
  dt <- tryCatch(
    data.table::fread(path, colClasses = list(character = "postcode"), showProgress = FALSE, na.strings = c("", "NA")),
    error = function(e) stop("input data is not a readable CSV: ", conditionMessage(e), call. = FALSE))
  missing <- setdiff(c("postcode", "date"), names(dt))
  if (length(missing)) stop("input data lacks column(s) ", paste(missing, collapse = ", "),
                            "; it has: ", paste(names(dt), collapse = ", "), call. = FALSE)
  dates <- suppressWarnings(as.Date(as.character(dt$date), tryFormats = c("%Y-%m-%d"), optional = TRUE))
  bad <- which(is.na(dates))
  if (length(bad)) stop("input data has ", length(bad), " row(s) whose date is not YYYY-MM-DD, first at row ",
                        bad[1], ": '", dt$date[bad[1]], "'", call. = FALSE)
  data.table::set(dt, j = "date", value = dates)
  dup <- which(duplicated(dt, by = c("postcode", "date")))
  if (length(dup)) stop("input data has ", length(dup), " duplicate (postcode, date) row(s), first: ",
                        dt$postcode[dup[1]], " ", format(dt$date[dup[1]]), call. = FALSE)
  dt <- dt[dt$postcode %in% postcodes]
  data.table::setorderv(dt, c("postcode", "date"))
  parts <- split(dt, by = "postcode", keep.by = TRUE, sorted = TRUE)
  .scoring$newdata <- lapply(parts, data.table::setDF)
  invisible(length(.scoring$newdata))
}

input_postcodes <- function() names(.scoring$newdata)

set_user_scorer <- function(path) {
  env <- new.env(parent = globalenv())
  sys.source(path, envir = env)
  if (!exists("score", envir = env, inherits = FALSE) || !is.function(env$score))
    stop("scorer.R does not define a function score(model, newdata)", call. = FALSE)
  .scoring$user_score <- env$score
  invisible(TRUE)
}

is_ts_model <- function(model) inherits(model, TS_CLASSES)

forecast_model <- function(model, h) {
  if (!requireNamespace("forecast", quietly = TRUE))
    stop("time-series model of class ", class(model)[1], " needs the R package 'forecast', which is not installed")
  fc <- forecast::forecast(model, h = h)
  out <- list(volume = as.numeric(fc$mean))
  levels <- if (is.null(fc$level)) numeric(0) else as.numeric(fc$level)
  for (lv in c(80, 95)) {
    i <- which(abs(levels - lv) < 1e-8)
    if (length(i) == 1) {
      out[[paste0("lower_", lv)]] <- as.numeric(as.matrix(fc$lower)[, i])
      out[[paste0("upper_", lv)]] <- as.numeric(as.matrix(fc$upper)[, i])
    }
  }
  out
}

predict_model <- function(model, newdata) {
  method <- NULL
  for (cl in class(model)) {
    method <- utils::getS3method("predict", cl, optional = TRUE)
    if (!is.null(method)) break
  }
  takes_type <- is.null(method) || any(c("type", "...") %in% names(formals(method)))
  if (takes_type) {
    tried <- tryCatch(list(value = predict(model, newdata = newdata, type = "response")),
                      error = function(e) e)
    if (!inherits(tried, "error")) return(tried$value)
    # Only a complaint about `type` itself earns the retry without it; any other error is the answer.
    if (!grepl("type", conditionMessage(tried), fixed = TRUE)) stop(tried)
  }
  predict(model, newdata = newdata)
}

# Bring whatever a scorer/predict/forecast returned to list(volume, [interval columns]) and check it.
normalise_output <- function(out, n) {
  if (is.list(out) && !is.data.frame(out) && !is.null(out$predictions)) out <- out$predictions  # ranger
  if (is.data.frame(out) || (is.list(out) && !is.null(out$volume))) {
    if (is.null(out$volume)) stop("scorer returned a data frame without a 'volume' column")
    res <- list(volume = out$volume)
    for (col in INTERVAL_COLUMNS) if (!is.null(out[[col]])) res[[col]] <- out[[col]]
  } else if (is.matrix(out) && ncol(out) == 1) {
    res <- list(volume = out[, 1])
  } else {
    res <- list(volume = out)
  }
  for (col in names(res)) {
    v <- res[[col]]
    if (!is.numeric(v)) stop(col, " is not numeric (got ", class(v)[1], ")")
    if (length(v) != n) stop("expected ", n, " ", col, " values (one per input row), got ", length(v))
    bad <- which(!is.finite(v))
    if (length(bad) && col == "volume") stop("volume is NA or infinite for ", length(bad), " of ", n, " rows")
    res[[col]] <- as.numeric(v)
  }
  neg <- which(res$volume < 0)
  if (length(neg)) stop("negative volume (", signif(res$volume[neg[1]], 6), ") for ", length(neg), " of ", n, " rows")
  res
}

score_one <- function(postcode, path) {
  newdata <- .scoring$newdata[[postcode]]
  if (is.null(newdata)) stop("no input rows for this postcode")
  n <- nrow(newdata)
  if (.scoring$horizon > 0 && n != .scoring$horizon)
    stop("input has ", n, " rows for this postcode, expected ", .scoring$horizon, " (the horizon)")
  model <- tryCatch(readRDS(path), error = function(e) stop("cannot read model: ", conditionMessage(e), call. = FALSE))
  out <- if (!is.null(.scoring$user_score)) {
    .scoring$user_score(model, newdata)
  } else if (is_ts_model(model)) {
    forecast_model(model, n)
  } else {
    predict_model(model, newdata)
  }
  res <- normalise_output(out, n)
  frame <- data.frame(postcode = postcode, date = newdata$date, volume = res$volume, stringsAsFactors = FALSE)
  for (col in INTERVAL_COLUMNS) frame[[col]] <- if (is.null(res[[col]])) NA_real_ else res[[col]]
  frame
}

# Score a chunk of (postcode, path) pairs. One failure never stops the others.
score_chunk <- function(postcodes, paths) {
  frames <- vector("list", length(postcodes))
  failures <- character(0)
  for (i in seq_along(postcodes)) {
    pc <- postcodes[[i]]
    r <- tryCatch(suppressWarnings(score_one(pc, paths[[i]])), error = function(e) e)
    if (inherits(r, "error")) failures[pc] <- gsub("[\r\n]+", " ", conditionMessage(r)) else frames[[i]] <- r
  }
  list(results = data.table::rbindlist(frames), failures = failures)
}

score_chunk_list <- function(chunk) score_chunk(chunk[[1]], chunk[[2]])

# ---- Driver side (the rpy2 session): fan a batch out over the worker nodes, keep results in R ----

# Runs on each node. Top-level on purpose: a closure made inside start_nodes would carry (and then modify)
# a serialized copy of the driver's .scoring instead of the node's own.
init_node <- function(script, input_path, postcodes, scorer_path, horizon) {
  source(script)
  .scoring$horizon <- horizon
  data.table::setDTthreads(1)
  load_input(input_path, postcodes)
  if (nzchar(scorer_path)) set_user_scorer(scorer_path)
  TRUE
}

start_nodes <- function(n, script, input_path, postcodes, scorer_path, horizon) {
  .scoring$results <- list()
  .scoring$cluster <- NULL
  .scoring$horizon <- horizon
  # The driver reads the input first, so bad input fails fast with its own message; it keeps the copy to
  # score itself when there is one core, and to answer input_postcodes().
  load_input(input_path, postcodes)
  if (nzchar(scorer_path)) set_user_scorer(scorer_path)
  if (n > 1) {
    .scoring$cluster <- parallel::makePSOCKcluster(n)
    parallel::clusterCall(.scoring$cluster, init_node, script, input_path, postcodes, scorer_path, horizon)
  }
  length(.scoring$newdata)
}

stop_nodes <- function() {
  if (!is.null(.scoring$cluster)) parallel::stopCluster(.scoring$cluster)
  .scoring$cluster <- NULL
  invisible(TRUE)
}

# Returns the failures of this batch as a named character vector (postcode -> reason).
score_batch <- function(postcodes, paths) {
  cl <- .scoring$cluster
  if (is.null(cl)) {
    parts <- list(score_chunk(postcodes, paths))
  } else {
    groups <- parallel::splitIndices(length(postcodes), length(cl))
    groups <- groups[lengths(groups) > 0]
    chunks <- lapply(groups, function(ix) list(postcodes[ix], paths[ix]))
    parts <- parallel::clusterApply(cl[seq_along(chunks)], chunks, score_chunk_list)
  }
  for (p in parts) if (nrow(p$results)) .scoring$results[[length(.scoring$results) + 1]] <- p$results
  failures <- unlist(lapply(parts, `[[`, "failures"))
  if (is.null(failures)) character(0) else failures
}

# Write every result so far, sorted, with the model version; returns the number of rows.
write_results <- function(path, model, version) {
  all <- data.table::rbindlist(.scoring$results)
  if (nrow(all) == 0) {
    all <- data.table::data.table(postcode = character(0), date = as.Date(character(0)), volume = numeric(0))
    for (col in INTERVAL_COLUMNS) all[[col]] <- numeric(0)
  }
  data.table::setorderv(all, c("postcode", "date"))
  all[, `:=`(model = model, model_version = version)]
  data.table::fwrite(all, path, dateTimeAs = "ISO", na = "")
  nrow(all)
}

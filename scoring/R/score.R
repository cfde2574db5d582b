# The scoring contract, R side. Sourced into the rpy2 session and into every worker node.
#
# For each postcode: newdata = that postcode's input rows (postcode, date, features). Scored by the first
# rule that applies: 1. the version's scorer.R `score(model, newdata)`; 2. forecast::forecast for time-series
# models; 3. predict(type = "response"), or predict without `type` where the method does not take it.

.scoring <- new.env()
.scoring$input <- NULL   # the shard's input rows as a plain list of columns, sorted by postcode and date
.scoring$rows <- NULL    # postcode -> c(first row, last row) in .scoring$input (a hashed environment)
.scoring$postcodes <- character(0)  # the postcodes with input rows, sorted
.scoring$user_score <- NULL
.scoring$results <- list()
.scoring$horizon <- 0

TS_CLASSES <- c("ets", "Arima", "ARIMA", "forecast_ARIMA", "tbats", "bats", "StructTS", "HoltWinters",
                "nnetar", "stlm", "ar", "baggedModel", "fracdiff", "arfima")
INTERVAL_COLUMNS <- c("lower_80", "upper_80", "lower_95", "upper_95")

# The shared-design fast path for glm/lm models (shared_design.R), next to this file.
local({
  files <- Filter(Negate(is.null), lapply(rev(seq_len(sys.nframe())), function(i) sys.frame(i)$ofile))
  source(file.path(dirname(files[[1]]), "shared_design.R"))
})

# Load the shard's input once; keep one data.frame per postcode. Errors here are fatal for the shard.
load_input <- function(path, postcodes) {
  dt <- tryCatch(
    # Columns a model was fitted with as factor/character/logical are read as text (model_aware.R).
    data.table::fread(path, colClasses = list(character = c("postcode", getOption("scoring.text_columns"))),
                      showProgress = FALSE, na.strings = c("", "NA")),
    error = function(e) stop("input data is not a readable CSV: ", conditionMessage(e), call. = FALSE))
  missing <- setdiff(c("postcode", "date"), names(dt))
  if (length(missing)) stop("input data lacks column(s) ", paste(missing, collapse = ", "),
                            "; it has: ", paste(names(dt), collapse = ", "), call. = FALSE)
  # Same normalisation as the plan's (scoring.names.normalise_postcode): quoted fields keep their blanks in fread.
  # Trimmed once per distinct postcode (each repeats once per day): a regex over every row cost 0.5 s per
  # 1.8 million rows.
  distinct <- unique(dt$postcode)
  trimmed <- trimws(distinct, whitespace = "[ \t\r\n]")
  if (!identical(trimmed, distinct)) data.table::set(dt, j = "postcode", value = trimmed[match(dt$postcode, distinct)])
  # fread already parses ISO dates (IDate); only other text needs the slow strptime path.
  dates <- if (inherits(dt$date, "Date")) as.Date(unclass(dt$date), origin = "1970-01-01") else
    suppressWarnings(as.Date(as.character(dt$date), format = "%Y-%m-%d", optional = TRUE))
  bad <- which(is.na(dates))
  if (length(bad)) stop("input data has ", length(bad), " row(s) whose date is not YYYY-MM-DD, first at row ",
                        bad[1], ": '", dt$date[bad[1]], "'", call. = FALSE)
  data.table::set(dt, j = "date", value = dates)
  dup <- which(duplicated(dt, by = c("postcode", "date")))
  if (length(dup)) stop("input data has ", length(dup), " duplicate (postcode, date) row(s), first: ",
                        dt$postcode[dup[1]], " ", format(dt$date[dup[1]]), call. = FALSE)
  dt <- dt[dt$postcode %in% postcodes]
  data.table::setorderv(dt, c("postcode", "date"))
  # Index runs instead of split(): 3,000 data.frames cost more than scoring a tenth of them.
  runs <- rle(dt$postcode)
  last <- cumsum(runs$lengths)
  # An environment: looking a name up in a list is a linear scan, 8 s per node at 30,000 postcodes.
  .scoring$rows <- list2env(stats::setNames(split(cbind(last - runs$lengths + 1L, last), seq_along(last)),
                                            runs$values), hash = TRUE, size = length(last))
  .scoring$postcodes <- runs$values
  .scoring$input <- as.list(dt)
  invisible(length(runs$values))
}

newdata_for <- function(postcode) {
  r <- .scoring$rows[[postcode]]
  if (is.null(r)) return(NULL)
  i <- r[1]:r[2]
  structure(lapply(.scoring$input, `[`, i), class = "data.frame", row.names = c(NA, -length(i)))
}

input_postcodes <- function() .scoring$input_postcodes

set_user_scorer <- function(path) {
  env <- new.env(parent = globalenv())
  sys.source(path, envir = env)
  if (!exists("score", envir = env, inherits = FALSE) || !is.function(env$score))
    stop("scorer.R does not define a function score(model, newdata)", call. = FALSE)
  # The nodes run without the JIT (spawn_nodes): compile the scorer's own functions, loops and all, once.
  for (name in ls(env, all.names = TRUE)) {
    f <- get(name, envir = env)
    if (is.function(f) && !is.primitive(f)) assign(name, compiler::cmpfun(f), envir = env)
  }
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

# Whether predict() for this class takes `type`, looked up once per class (the lookup costs as much as a
# small predict).
.takes_type <- new.env()
predict_takes_type <- function(model) {
  key <- paste(class(model), collapse = "/")
  known <- .takes_type[[key]]
  if (!is.null(known)) return(known)
  method <- NULL
  for (cl in class(model)) {
    method <- utils::getS3method("predict", cl, optional = TRUE)
    if (!is.null(method)) break
  }
  .takes_type[[key]] <- is.null(method) || any(c("type", "...") %in% names(formals(method)))
}

predict_model <- function(model, newdata) {
  if (predict_takes_type(model)) {
    tried <- tryCatch(predict(model, newdata = newdata, type = "response"), error = function(e) e)
    if (!inherits(tried, "error")) return(tried)
    # Only a complaint about `type` itself earns the retry without it; any other error is the answer.
    if (!grepl("type", conditionMessage(tried), fixed = TRUE)) stop(tried)
  }
  predict(model, newdata = newdata)
}

# One output column, checked: numeric, one value per input row; volumes finite and >= 0.
checked_column <- function(col, v, n) {
  if (!is.numeric(v)) stop(col, " is not numeric (got ", class(v)[1], ")")
  if (length(v) != n) stop("expected ", n, " ", col, " values (one per input row), got ", length(v))
  if (col == "volume") {
    bad <- sum(!is.finite(v))
    if (bad) stop("volume is NA or infinite for ", bad, " of ", n, " rows")
    neg <- which(v < 0)
    if (length(neg)) stop("negative volume (", signif(v[neg[1]], 6), ") for ", length(neg), " of ", n, " rows")
  }
  as.numeric(v)
}

# Bring whatever a scorer/predict/forecast returned to list(volume, [interval columns]) and check it.
normalise_output <- function(out, n) {
  if (is.numeric(out) && is.null(dim(out))) {  # the common case: predict() gave a plain vector
    return(list(volume = checked_column("volume", as.vector(out), n)))
  }
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
  for (col in names(res)) res[[col]] <- checked_column(col, res[[col]], n)
  res
}

# Intervals the model gave must be finite and ordered: lower_95 <= lower_80 <= volume <= upper_80 <= upper_95
# (an absent column is skipped). Otherwise the postcode fails: a published interval is never nonsense.
check_intervals <- function(res) {
  present <- intersect(c("lower_95", "lower_80", "volume", "upper_80", "upper_95"), names(res))
  for (col in setdiff(present, "volume")) {
    bad <- sum(!is.finite(res[[col]]))
    if (bad) stop(col, " is NA or infinite for ", bad, " of ", length(res$volume), " rows")
  }
  for (i in seq_len(length(present) - 1)) {
    low <- res[[present[i]]]; high <- res[[present[i + 1]]]
    bad <- which(low > high)
    if (length(bad)) stop(present[i], " > ", present[i + 1], " for ", length(bad), " of ", length(low),
                          " rows (first: ", signif(low[bad[1]], 6), " > ", signif(high[bad[1]], 6), ")")
  }
  invisible(res)
}

# The models of a chunk as raw bytes, one list entry per model. They arrive as slices (offset, length) of a
# few files, one per downloaded pack range: one read per file, not one file per model (creating 3,000 small
# files cost the worker seconds). A file that cannot be read gives its models the error instead of bytes.
model_bytes <- function(files, offsets, sizes) {
  out <- vector("list", length(files))
  for (f in unique(files)) {
    at <- which(files == f)
    lo <- min(offsets[at])
    span <- tryCatch({
      con <- file(f, "rb")
      tryCatch({
        seek(con, lo)
        readBin(con, "raw", max(offsets[at] + sizes[at]) - lo)
      }, finally = close(con))
    }, error = function(e) e)
    for (k in at) out[[k]] <- if (inherits(span, "error")) span else {
      first <- offsets[k] - lo + 1
      if (first + sizes[k] - 1 > length(span)) simpleError(paste("file", f, "ends before the model")) else
        span[first:(first + sizes[k] - 1)]
    }
  }
  out
}

# What readRDS does with a file, from bytes: gzip, bzip2 or xz compression is detected; none is fine too
# (the warning saying so is muffled with every other warning of prepare_one).
read_model <- function(bytes) {
  if (inherits(bytes, "error")) stop(bytes)
  unserialize(memDecompress(bytes, type = "unknown"))
}

# Everything per postcode up to predict: its input rows (checked), its model.
prepare_one <- function(postcode, bytes) {
  newdata <- newdata_for(postcode)
  if (is.null(newdata)) stop("no input rows for this postcode")
  n <- nrow(newdata)
  if (.scoring$horizon > 0 && n != .scoring$horizon)
    stop("input has ", n, " rows for this postcode, expected ", .scoring$horizon, " (the horizon)")
  model <- tryCatch(read_model(bytes), error = function(e) stop("cannot read model: ", conditionMessage(e), call. = FALSE))
  # model_aware.R: packages loaded, columns typed as fitted, forecast steps from the input's dates.
  if (exists("model_aware_newdata", mode = "function")) newdata <- model_aware_newdata(postcode, model, newdata)
  list(postcode = postcode, model = model, newdata = newdata)
}

# Score one prepared postcode (`out`: what the shared-design path computed for it, else NULL) and check it.
finish_one <- function(p, out = NULL) {
  model <- p$model
  newdata <- p$newdata
  n <- nrow(newdata)
  if (is.null(out)) out <- if (!is.null(.scoring$user_score)) {
    .scoring$user_score(model, newdata)
  } else if (is_ts_model(model)) {
    steps <- attr(newdata, "forecast_steps")
    if (is.null(steps)) forecast_model(model, n) else forecast_on_steps(model, steps)
  } else {
    predict_model(model, newdata)
  }
  res <- check_intervals(normalise_output(out, n))
  # A plain list, not a data.frame: rbindlist takes lists, and data.frame() costs more than predict here.
  frame <- list(postcode = rep(p$postcode, n), date = newdata$date, volume = res$volume)
  for (col in INTERVAL_COLUMNS) frame[[col]] <- if (is.null(res[[col]])) rep(NA_real_, n) else res[[col]]
  frame
}

# suppressWarnings, except for a warning or message raised with stop(): R sends such a condition past every
# handler to the top level, which ends the node; as an error it fails its postcode with its own message.
quietly <- function(expr) {
  withCallingHandlers(expr,
    warning = function(w) {
      if (is.null(findRestart("muffleWarning"))) stop(conditionMessage(w), call. = FALSE)
      invokeRestart("muffleWarning")
    },
    message = function(m) if (is.null(findRestart("muffleMessage"))) stop(conditionMessage(m), call. = FALSE))
}

# Score a chunk of postcodes whose models are at (files, offsets, sizes); by default each file is one whole
# .rds. One failure never stops the others.
score_chunk <- function(postcodes, files, offsets = numeric(length(files)), sizes = file.size(files)) {
  frames <- vector("list", length(postcodes))
  prepared <- vector("list", length(postcodes))
  failures <- character(0)
  fail <- function(pc, e) failures[pc] <<- gsub("[\r\n]+", " ", conditionMessage(e))
  bytes <- model_bytes(files, offsets, sizes)
  for (i in seq_along(postcodes)) {
    r <- tryCatch(quietly(prepare_one(postcodes[[i]], bytes[[i]])), error = function(e) e)
    if (inherits(r, "error")) fail(postcodes[[i]], r) else prepared[[i]] <- r
    bytes[i] <- list(NULL)
  }
  # glm/lm models sharing a formula: one model frame for all their rows (shared_design.R); the rest: NULL.
  shared <- if (is.null(.scoring$user_score))
    tryCatch(suppressWarnings(shared_design_predict(prepared)), error = function(e) list()) else list()
  for (i in seq_along(postcodes)) {
    if (is.null(prepared[[i]])) next
    r <- tryCatch(quietly(finish_one(prepared[[i]], shared[i][[1]])), error = function(e) e)
    if (inherits(r, "error")) fail(postcodes[[i]], r) else frames[[i]] <- r
    prepared[i] <- list(NULL)
  }
  list(results = data.table::rbindlist(frames), failures = failures)
}

score_chunk_list <- function(chunk) do.call(score_chunk, chunk)

# ---- Driver side (the rpy2 session): fan a batch out over the worker nodes, keep results in R ----

# Load the shard's input and the version's scorer into this R session (a node, or the driver without nodes);
# returns the postcodes that have input rows.
prepare_session <- function(input_path, postcodes, scorer_path, horizon) {
  .scoring$horizon <- horizon
  load_input(input_path, postcodes)
  if (nzchar(scorer_path)) set_user_scorer(scorer_path)
  .scoring$postcodes
}

# Runs on each node. Top-level on purpose: a closure made inside start_nodes would carry (and then modify)
# a serialized copy of the driver's .scoring instead of the node's own.
# Errors come back as values, so the driver can report the node's own message (not checkForRemoteErrors').
init_node <- function(script, input_path, postcodes, scorer_path, horizon) {
  if (!identical(get0(".warm_script", envir = globalenv()), script)) source(script)
  data.table::setDTthreads(1)
  tryCatch(list(ok = TRUE, postcodes = prepare_session(input_path, postcodes, scorer_path, horizon)),
           error = function(e) list(ok = FALSE, message = conditionMessage(e)))
}

# On each node as soon as it is up: this file and data.table, so that init_node only reads the input.
warm_node <- function(script) {
  source(script)
  assign(".warm_script", script, envir = globalenv())
  data.table::setDTthreads(1)
  TRUE
}

# Spawning the nodes (and warming them: `script` is this file) comes first, so it overlaps with the worker
# fetching the manifest and the input.
spawn_nodes <- function(n, script = "") {
  .scoring$results <- list()
  # The nodes inherit these from here (R reads them at start-up). Scoring allocates many small objects;
  # letting the heap grow faster cuts ~12% per model. R's JIT compiled each of this file's functions on its
  # first call, on every node: a third of a node's time for 1,500 slim glm models, for code that runs no
  # faster compiled (it calls compiled base R). Installed packages are compiled already; scorer.R is compiled
  # when it is loaded (set_user_scorer).
  Sys.setenv(R_GC_MEM_GROW = "3", R_ENABLE_JIT = "0")
  .scoring$cluster <- if (n > 1) parallel::makePSOCKcluster(n) else NULL
  .scoring$warming <- FALSE
  if (!is.null(.scoring$cluster) && nzchar(script)) {
    # Sent without waiting: the nodes source this file and load data.table while the worker downloads the manifest, the input
    # and the packs; the next call to the nodes collects the replies first (nodes_ready).
    for (node in .scoring$cluster) parallel:::sendCall(node, warm_node, list(script))
    .scoring$warming <- TRUE
  }
  invisible(n)
}

nodes_ready <- function() {
  if (isTRUE(.scoring$warming)) {
    .scoring$warming <- FALSE
    parallel:::checkForRemoteErrors(lapply(.scoring$cluster, parallel:::recvResult))
  }
  invisible(TRUE)
}

start_nodes <- function(script, input_path, postcodes, scorer_path, horizon) {
  if (is.null(.scoring$cluster)) {
    .scoring$input_postcodes <- prepare_session(input_path, postcodes, scorer_path, horizon)
    return(length(.scoring$input_postcodes))
  }
  # With nodes, only the nodes hold the input: the driver just dispatches and collects.
  nodes_ready()
  replies <- parallel::clusterCall(.scoring$cluster, init_node, script, input_path, postcodes, scorer_path, horizon)
  for (r in replies) if (!isTRUE(r$ok)) stop(r$message, call. = FALSE)
  .scoring$input_postcodes <- replies[[1]]$postcodes
  length(.scoring$input_postcodes)
}

stop_nodes <- function() {
  if (!is.null(.scoring$cluster)) {
    try(nodes_ready(), silent = TRUE)
    parallel::stopCluster(.scoring$cluster)
  }
  .scoring$cluster <- NULL
  invisible(TRUE)
}

# Returns the failures of this batch as a named character vector (postcode -> reason).
score_batch <- function(postcodes, files, offsets, sizes) {
  cl <- .scoring$cluster
  offsets <- as.numeric(offsets)
  sizes <- as.numeric(sizes)
  if (is.null(cl)) {
    parts <- list(score_chunk(postcodes, files, offsets, sizes))
  } else {
    groups <- parallel::splitIndices(length(postcodes), length(cl))
    groups <- groups[lengths(groups) > 0]
    chunks <- lapply(groups, function(ix) list(postcodes[ix], files[ix], offsets[ix], sizes[ix]))
    parts <- parallel::clusterApply(cl[seq_along(chunks)], chunks, score_chunk_list)
  }
  for (p in parts) if (nrow(p$results)) .scoring$results[[length(.scoring$results) + 1]] <- p$results
  failures <- unlist(lapply(parts, `[[`, "failures"))
  if (is.null(failures)) character(0) else failures
}

# Write every result so far, sorted, with the model version; returns the number of rows.
write_results <- function(path, model, version) {
  # The nodes are done: sort and write on every core (data.table's default is half of them).
  threads <- data.table::setDTthreads(0)
  on.exit(data.table::setDTthreads(threads))
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

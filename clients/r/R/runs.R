# Runs: start (from a blob or a data frame), follow, list, cancel, retry.

input_upload <- function(conn, data, name = NULL) {
  check_connection(conn)
  if (!is.data.frame(data)) stop("data must be a data frame", call. = FALSE)
  missing <- setdiff(c("postcode", "date"), names(data))
  if (length(missing)) {
    stop("data lacks column(s) ", paste(missing, collapse = ", "), call. = FALSE)
  }
  if (is.null(name)) {
    # tempfile() names are random without touching the user's random number stream (set.seed stays valid).
    name <- paste0("r-", format(Sys.time(), "%Y%m%dT%H%M%S", tz = "UTC"), "-",
                   sub("^file", "", basename(tempfile())), ".csv")
  }
  data$postcode <- as.character(data$postcode)
  data$date <- format(as.Date(data$date), "%Y-%m-%d")
  file <- tempfile(fileext = ".csv")
  on.exit(unlink(file))
  utils::write.csv(data, file, row.names = FALSE, na = "")
  body <- readBin(file, "raw", file.size(file))
  response <- scoring_request(conn, "PUT", paste0("inputs/", path_part(name, "name")), body = body,
                              content_type = "text/csv")
  response_json(response)
}

run_start <- function(conn, input = "latest", model = NULL, version = "champion", horizon = NULL,
                      postcodes = NULL, shard_size = NULL, dry_run = FALSE) {
  check_connection(conn)
  if (is.data.frame(input)) {
    input <- input_upload(conn, input)$input
  }
  if (!is.character(input) || length(input) != 1L) {
    stop("input: a blob name in the input container, \"latest\", or a data frame", call. = FALSE)
  }
  body <- list(input = input, version = version)
  if (!is.null(model)) body$model <- model
  if (!is.null(horizon)) body$horizon <- horizon
  if (!is.null(postcodes)) body$postcodes <- I(as.character(postcodes))
  if (!is.null(shard_size)) body$shardSize <- shard_size
  if (isTRUE(dry_run)) {
    body$dryRun <- TRUE
    return(structure(request_json(conn, "POST", "runs", body = body), class = "scoring_plan"))
  }
  started <- request_json(conn, "POST", "runs", body = body)
  run_object(conn, list(id = started$id, state = "pending", progress = list()))
}

run_object <- function(conn, view) {
  view$conn <- conn
  structure(view, class = "scoring_run")
}

# Accepts run_x(conn, "run-id"), run_x(conn, run) and run_x(run): a run object carries its connection.
as_run <- function(conn, run) {
  if (inherits(conn, "scoring_run")) return(list(conn = conn$conn, id = conn$id))
  check_connection(conn)
  if (inherits(run, "scoring_run")) return(list(conn = conn, id = run$id))
  list(conn = conn, id = path_part(run, "run"))
}

run_status <- function(conn, run) {
  r <- as_run(conn, run)
  run_object(r$conn, request_json(r$conn, "GET", paste0("runs/", r$id)))
}

run_wait <- function(conn, run, timeout = 3600, interval = 1) {
  r <- as_run(conn, run)
  deadline <- Sys.time() + timeout
  status <- run_status(r$conn, r$id)
  shards <- "0/?"
  bar <- cli::cli_progress_bar(
    paste("Run", r$id), total = NA, clear = FALSE, auto_terminate = FALSE,
    format = "{cli::pb_spin} {r$id} {cli::pb_bar} {cli::pb_current}/{cli::pb_total} postcodes | shards {shards} | {cli::pb_elapsed}"
  )
  repeat {
    p <- status$progress
    if (length(p$postcodes_total) && p$postcodes_total > 0) {
      shards <- sprintf("%s/%s", p$shards_done %||% 0, p$shards_total %||% "?")
      cli::cli_progress_update(id = bar, total = p$postcodes_total,
                               set = (p$postcodes_scored %||% 0) + (p$postcodes_failed %||% 0))
    } else {
      cli::cli_progress_update(id = bar, set = 0)
    }
    if (status$runtimeStatus %in% c("Completed", "Failed", "Terminated")) break
    if (Sys.time() > deadline) {
      cli::cli_progress_done(id = bar)
      stop("run ", r$id, " did not finish within ", timeout, " s (it goes on; run_wait() again)",
           call. = FALSE)
    }
    Sys.sleep(interval)
    status <- run_status(r$conn, r$id)
  }
  cli::cli_progress_done(id = bar)
  if (identical(status$state, "failed") || identical(status$state, "cancelled")) {
    errors <- unlist(status$errors)
    stop(structure(class = c("scoring_error", "error", "condition"),
                   list(message = sprintf("run %s %s%s", r$id, status$state,
                                          if (length(errors)) paste0(": ", paste(errors, collapse = "; "))
                                          else ""),
                        call = NULL, status = NA_integer_, field = NULL)))
  }
  if (identical(status$state, "completed_with_failures")) {
    # The count; the status lists only the first failed postcodes (all of them: run_failures()).
    failed <- status$postcodes_failed_count %||% length(status$postcodes_failed)
    cli::cli_alert_warning("run {r$id}: {failed} postcode(s) failed; see run_failures()")
  } else {
    cli::cli_alert_success("run {r$id}: {status$state}")
  }
  status
}

run_list <- function(conn) {
  runs <- request_json(conn, "GET", "runs")$runs
  field <- function(name, type, default) {
    vapply(runs, function(x) {
      v <- x[[name]]
      if (is.null(v) || length(v) != 1L) default else v
    }, type)
  }
  data.frame(
    id = field("id", character(1), NA_character_),
    state = field("state", character(1), NA_character_),
    created = as.POSIXct(substr(field("created", character(1), NA_character_), 1, 19),
                         format = "%Y-%m-%dT%H:%M:%S", tz = "UTC"),
    model = field("model", character(1), NA_character_),
    version = field("version", character(1), NA_character_),
    trigger = field("trigger", character(1), NA_character_),
    postcodes_scored = vapply(runs, function(x) as.integer(x$progress$postcodes_scored %||% NA),
                              integer(1)),
    postcodes_failed = vapply(runs, function(x) as.integer(x$progress$postcodes_failed %||% NA),
                              integer(1)),
    stringsAsFactors = FALSE
  )
}

run_cancel <- function(conn, run) {
  r <- as_run(conn, run)
  out <- request_json(r$conn, "POST", paste0("runs/", r$id, "/cancel"))
  cli::cli_alert_info("run {r$id}: {out$state}")
  invisible(out)
}

run_retry <- function(conn, run) {
  r <- as_run(conn, run)
  out <- request_json(r$conn, "POST", paste0("runs/", r$id, "/retry"))
  cli::cli_alert_info("run {out$id}: retrying {out$postcodes} failed postcode(s) of {out$retry_of}")
  run_object(r$conn, list(id = out$id, retry_of = out$retry_of, state = "pending", progress = list()))
}

print.scoring_run <- function(x, ...) {
  cat("<scoring run ", x$id, "> ", x$state %||% "unknown", "\n", sep = "")
  p <- x$progress
  if (length(p$postcodes_total)) {
    cat("  shards ", p$shards_done %||% 0, "/", p$shards_total %||% "?", ", postcodes ",
        p$postcodes_scored %||% 0, " scored, ", p$postcodes_failed %||% 0, " failed of ",
        p$postcodes_total, "\n", sep = "")
  }
  if (!is.null(x$model)) cat("  model ", x$model, "/", x$version %||% "?", "\n", sep = "")
  if (!is.null(x$retry_of)) cat("  retry of ", x$retry_of, "\n", sep = "")
  errors <- unlist(x$errors)
  if (length(errors)) cat("  errors: ", paste(errors, collapse = "; "), "\n", sep = "")
  invisible(x)
}

print.scoring_plan <- function(x, ...) {
  cat("<dry run> nothing was started\n")
  str(unclass(x), give.attr = FALSE, max.level = 1L)
  invisible(x)
}

# Model versions: list, register (checked server-side in the scoring image's R), promote, roll back.

model_versions <- function(conn, model) {
  out <- request_json(conn, "GET", paste0("models/", path_part(model, "model"), "/versions"))
  rows <- out$versions
  data.frame(
    version = vapply(rows, function(r) r$version, character(1)),
    created = as.POSIXct(vapply(rows, function(r) r$created, character(1)),
                         format = "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"),
    models = vapply(rows, function(r) as.integer(r$models), integer(1)),
    r_version = vapply(rows, function(r) r$r_version, character(1)),
    champion = vapply(rows, function(r) isTRUE(r$champion), logical(1)),
    scorer = vapply(rows, function(r) isTRUE(r$scorer), logical(1)),
    stringsAsFactors = FALSE
  )
}

model_register <- function(conn, model, version, models, scorer = NULL, champion = FALSE,
                           wait = TRUE, timeout = 1800, part_size = 16 * 1024^2) {
  check_connection(conn)
  path_part(model, "model")
  path_part(version, "version")
  folder <- tempfile("rscoring-version-")
  dir.create(folder)
  on.exit(unlink(folder, recursive = TRUE), add = TRUE)
  if (is.character(models) && length(models) == 1L) {
    if (!dir.exists(models)) stop("models: folder ", models, " does not exist", call. = FALSE)
    files <- list.files(models, full.names = TRUE, all.files = FALSE, no.. = TRUE)
    if (!length(files)) stop("models: folder ", models, " is empty", call. = FALSE)
    file.copy(files, folder, recursive = FALSE)
  } else if (is.list(models) && length(models)) {
    postcodes <- names(models)
    if (is.null(postcodes) || anyNA(postcodes) || any(!nzchar(postcodes))) {
      stop("models: a named list, one fitted model per postcode (the names)", call. = FALSE)
    }
    if (anyDuplicated(postcodes)) {
      stop("models: postcode ", postcodes[anyDuplicated(postcodes)], " appears twice", call. = FALSE)
    }
    if (any(grepl("[/\\\\]", postcodes))) stop("models: names may not contain '/'", call. = FALSE)
    for (pc in postcodes) saveRDS(models[[pc]], file.path(folder, paste0(pc, ".rds")))
  } else {
    stop("models: a named list of fitted models, or a folder of <postcode>.rds files", call. = FALSE)
  }
  if (!is.null(scorer)) write_scorer(scorer, file.path(folder, "scorer.R"))
  archive <- tempfile("rscoring-", fileext = ".tar.gz")
  on.exit(unlink(archive), add = TRUE)
  old <- setwd(folder)
  tryCatch(utils::tar(archive, files = list.files("."), compression = "gzip", tar = "internal"),
           finally = setwd(old))
  path <- paste0("models/", path_part(model, "model"), "/versions/", path_part(version, "version"))
  query <- list(champion = tolower(isTRUE(champion)))
  if (file.size(archive) <= part_size) {
    body <- readBin(archive, "raw", file.size(archive))
    response <- scoring_request(conn, "POST", path, query = query, body = body,
                                content_type = "application/gzip")
  } else {
    query$upload <- upload_parts(conn, archive, part_size)
    response <- scoring_request(conn, "POST", path, query = query)
  }
  registration <- registration_object(response_json(response))
  if (!wait) return(registration)
  wait_registration(conn, registration$id, timeout)
}

# A version larger than one request body goes in parts, then the registration names the upload.
upload_parts <- function(conn, archive, part_size) {
  upload <- request_json(conn, "POST", "uploads")
  size <- file.size(archive)
  if (size > upload$maxBytes) {
    stop("the version is ", size, " bytes packed; the service takes at most ", upload$maxBytes, call. = FALSE)
  }
  part_size <- min(part_size, upload$partBytes)
  parts <- ceiling(size / part_size)
  bar <- cli::cli_progress_bar("Uploading", total = parts, clear = FALSE)
  con <- file(archive, "rb")
  on.exit(close(con))
  for (n in seq_len(parts) - 1L) {
    chunk <- readBin(con, "raw", part_size)
    scoring_request(conn, "PUT", paste0("uploads/", upload$id, "/parts/", n), body = chunk,
                    content_type = "application/octet-stream")
    cli::cli_progress_update(id = bar)
  }
  cli::cli_progress_done(id = bar)
  upload$id
}

write_scorer <- function(scorer, path) {
  if (is.function(scorer)) {
    writeLines(c("score <- ", deparse(scorer)), path)
  } else if (is.character(scorer) && length(scorer) == 1L && file.exists(scorer)) {
    file.copy(scorer, path, overwrite = TRUE)
  } else {
    stop("scorer: a function(model, newdata) or the path of a scorer.R file", call. = FALSE)
  }
}

model_registration <- function(conn, id) {
  registration_object(request_json(conn, "GET", paste0("registrations/", path_part(id, "id"))))
}

registration_object <- function(x) structure(x, class = "scoring_registration")

wait_registration <- function(conn, id, timeout) {
  deadline <- Sys.time() + timeout
  cli::cli_progress_step("Checking and storing the models in the scoring image's R")
  repeat {
    reg <- model_registration(conn, id)
    if (!identical(reg$state, "checking")) break
    if (Sys.time() > deadline) stop("registration ", id, " did not finish within ", timeout, " s",
                                    call. = FALSE)
    Sys.sleep(0.5)
  }
  if (!identical(reg$state, "registered")) {
    cli::cli_progress_done(result = "failed")
    stop(structure(class = c("scoring_error", "error", "condition"),
                   list(message = sprintf("registration of %s/%s %s: %s", reg$model, reg$version,
                                          reg$state, reg$error), call = NULL, status = NA_integer_,
                        field = NULL)))
  }
  cli::cli_progress_done()
  reg
}

print.scoring_registration <- function(x, ...) {
  cat("<registration ", x$id, "> ", x$model, "/", x$version, ": ", x$state, "\n", sep = "")
  if (identical(x$state, "registered")) {
    d <- x$details
    cat("  ", d$models, " models in ", d$packs, " pack(s), ", d$slimmed, " slimmed, R ", d$r_version,
        if (isTRUE(x$champion)) ", champion" else "", "\n", sep = "")
  } else if (nzchar(x$error %||% "")) {
    cat("  ", x$error, "\n", sep = "")
  }
  invisible(x)
}

model_promote <- function(conn, model, version) {
  out <- request_json(conn, "PUT", paste0("models/", path_part(model, "model"), "/champion"),
                      body = list(version = version))
  cli::cli_alert_success("{out$model}: champion is now {out$champion}{if (!is.null(out$previous)) paste0(' (was ', out$previous, ')') else ''}")
  invisible(out)
}

model_rollback <- function(conn, model, version = NULL) {
  if (is.null(version)) {
    versions <- model_versions(conn, model)
    current <- which(versions$champion)
    if (!length(current)) stop("model ", model, " has no champion to roll back from", call. = FALSE)
    if (current[1] == 1L) {
      stop("model ", model, ": champion ", versions$version[current], " is its oldest version; ",
           "nothing to roll back to", call. = FALSE)
    }
    version <- versions$version[current[1] - 1L]
  }
  model_promote(conn, model, version)
}

model_latest <- function(conn, model) {
  response <- scoring_request(conn, "GET", paste0("models/", path_part(model, "model"), "/latest"),
                              accept = "text/csv")
  run_id <- curl::parse_headers_list(response$headers)[["x-run-id"]]
  results_frame(rawToChar(response$content), run_manifest(conn, run_id))
}

`%||%` <- function(a, b) if (is.null(a)) b else a

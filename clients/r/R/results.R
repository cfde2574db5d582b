# Results of a run: a data frame with Date columns and the run manifest as an attribute.

run_results <- function(conn, run) {
  r <- as_run(conn, run)
  response <- scoring_request(r$conn, "GET", paste0("runs/", r$id, "/results"), accept = "text/csv")
  results_frame(rawToChar(response$content), run_manifest(r$conn, r$id))
}

run_manifest <- function(conn, run) {
  r <- as_run(conn, run)
  request_json(r$conn, "GET", paste0("runs/", r$id, "/manifest"))
}

run_failures <- function(conn, run) {
  r <- as_run(conn, run)
  failures <- request_json(r$conn, "GET", paste0("runs/", r$id, "/failures"))$failures
  data.frame(postcode = vapply(failures, function(f) f$postcode, character(1)),
             reason = vapply(failures, function(f) f$reason, character(1)),
             stringsAsFactors = FALSE)
}

results_frame <- function(text, manifest) {
  character_columns <- c(postcode = "character", date = "character", model = "character",
                         model_version = "character")
  out <- utils::read.csv(text = text, colClasses = character_columns, stringsAsFactors = FALSE)
  out$date <- as.Date(out$date)
  for (column in c("volume", "lower_80", "upper_80", "lower_95", "upper_95")) {
    if (column %in% names(out)) out[[column]] <- as.numeric(out[[column]])
  }
  attr(out, "manifest") <- manifest
  out
}

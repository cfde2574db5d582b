# Scoring, R side of model-aware scoring: each model's packages loaded, its input typed as it was fitted,
# time-series forecasts placed on the input's dates. Sourced next to score.R in the driver and on every node.
#
# The worker writes one JSON file per shard (prepare_models): the version's distinct profiles (packages,
# formula packages, input prototype) and, per postcode, which profile applies and the training end date.
# score.R calls model_aware_newdata() for each postcode before predict/forecast.

if (!exists(".model_aware", inherits = FALSE) || !is.environment(.model_aware)) .model_aware <- new.env()

# loadNamespace registers S3 methods (predict.gam is found); attaching puts formula functions (ns, bs, s)
# where model.frame evaluates the formula. Done once per package and process.
load_model_packages <- function(packages, attach = character(0)) {
  for (p in packages) {
    if (isNamespaceLoaded(p)) next
    ok <- suppressPackageStartupMessages(requireNamespace(p, quietly = TRUE))
    if (!ok) stop("the model needs R package '", p, "', which is not installed here", call. = FALSE)
  }
  for (p in attach) {
    if (paste0("package:", p) %in% search()) next
    ok <- suppressPackageStartupMessages(require(p, character.only = TRUE, quietly = TRUE))
    if (!ok) stop("the model's formula needs R package '", p, "', which is not installed here", call. = FALSE)
  }
  invisible(TRUE)
}

# Read the shard's profile file; returns the input columns to read as text (factor, character, logical).
load_model_profiles <- function(path) {
  info <- jsonlite::fromJSON(path, simplifyVector = FALSE)
  .model_aware$profiles <- info$profiles
  .model_aware$postcodes <- list2env(as.list(info$postcodes), hash = TRUE)  # looked up per postcode: hashed, not a list
  .model_aware$max_gap_days <- as.numeric(info$max_gap_days)
  text <- character(0)
  for (p in info$profiles) for (col in p$prototype)
    if (col$type %in% c("factor", "ordered", "character", "logical")) text <- c(text, col$name)
  text <- setdiff(unique(text), c("postcode", "date"))
  options(scoring.text_columns = text)
  text
}

# Driver side: before start_nodes, so load_input reads the text columns as text.
prepare_models <- function(path, this_file) {
  text <- load_model_profiles(path)
  cl <- .scoring$cluster
  if (!is.null(cl)) {
    nodes_ready()
    parallel::clusterCall(cl, source, this_file)
    parallel::clusterCall(cl, load_model_profiles, path)
  }
  length(text)
}

LOGICAL_TRUE <- c("TRUE", "T", "true", "True", "1")
LOGICAL_FALSE <- c("FALSE", "F", "false", "False", "0")

shown <- function(values, at_most = 5) {
  values <- unique(values)
  paste0(paste0("'", utils::head(values, at_most), "'", collapse = ", "),
         if (length(values) > at_most) sprintf(" and %d more", length(values) - at_most) else "")
}

# One column to the type it was fitted with; stops naming the column and the values that do not fit.
conform_column <- function(x, col) {
  name <- col$name
  missing_value <- if (is.character(x)) is.na(x) | !nzchar(x) else is.na(x)
  # As text only when a check or a message needs it: formatting a Date column for every postcode cost
  # ~10% of scoring a slim glm.
  delayedAssign("text", as.character(x))
  bad <- function(what, values) stop("column '", name, "' (fitted as ", col$type, ") ", what, ": ",
                                     shown(values), call. = FALSE)
  if (!is.null(col$levels_of)) {
    # Used inside factor() in the formula: its values must be among the levels that factor had in fitting.
    levels <- unlist(col$levels)
    unseen <- !missing_value & !(text %in% levels) &
      !(suppressWarnings(as.numeric(text)) %in% suppressWarnings(as.numeric(levels)))
    if (any(unseen)) bad(paste0("has value(s) not among the fitted levels of ", col$levels_of, " (",
                                shown(levels, 12), ")"), text[unseen])
  }
  switch(col$type,
    numeric = {
      v <- if (is.numeric(x)) as.numeric(x) else suppressWarnings(as.numeric(text))
      wrong <- is.na(v) & !missing_value
      if (any(wrong)) bad("has values that are not numbers", text[wrong])
      v
    },
    logical = {
      v <- ifelse(text %in% LOGICAL_TRUE, TRUE, ifelse(text %in% LOGICAL_FALSE, FALSE, NA))
      wrong <- is.na(v) & !missing_value
      if (any(wrong)) bad("has values that are not TRUE/FALSE", text[wrong])
      v
    },
    factor = , ordered = , character = {
      levels <- unlist(col$levels)
      if (!is.null(levels) && is.null(col$levels_of)) {
        unseen <- !missing_value & !(text %in% levels)
        if (any(unseen)) bad(paste0("has level(s) not seen in fitting (fitted levels: ", shown(levels, 12), ")"),
                             text[unseen])
      }
      # Levels unknown: text, which model.frame turns into a factor as it always did.
      if (col$type == "character" || !is.null(col$levels_of) || is.null(levels)) ifelse(missing_value, NA_character_, text) else
        factor(ifelse(missing_value, NA_character_, text), levels = levels, ordered = col$type == "ordered")
    },
    Date = {
      v <- if (inherits(x, "Date")) x else as.Date(text, format = "%Y-%m-%d", optional = TRUE)
      wrong <- is.na(v) & !missing_value
      if (any(wrong)) bad("has values that are not YYYY-MM-DD dates", text[wrong])
      v
    },
    x)
}

conform_newdata <- function(newdata, prototype) {
  missing <- setdiff(vapply(prototype, `[[`, character(1), "name"), names(newdata))
  if (length(missing)) stop("input lacks column(s) the model was fitted with: ", paste(missing, collapse = ", "),
                            call. = FALSE)
  for (col in prototype) newdata[[col$name]] <- conform_column(newdata[[col$name]], col)
  newdata
}

# A step as scoring/steps.py writes it ("1 day", "2 days", "1 week", "3 months"; NULL: one day) ->
# list(count, unit) with unit "day" (weeks as 7 days) or "month".
parse_step <- function(step) {
  if (is.null(step) || (length(step) == 1 && is.na(step))) return(list(count = 1L, unit = "day", text = "1 day"))
  m <- regmatches(step, regexec("^([0-9]+) (day|week|month)s?$", step))[[1]]
  if (length(m) != 3) stop("model step '", step, "' is not '<n> days|weeks|months'", call. = FALSE)
  n <- as.integer(m[2])
  if (m[3] == "week") list(count = 7L * n, unit = "day", text = step) else list(count = n, unit = m[3], text = step)
}

is_month_end <- function(d) as.integer(format(d + 1, "%d")) == 1L

# The date of step k after `end` (months: a month-end anchor gives month ends, else the day is kept).
add_steps <- function(end, k, step) {
  if (step$unit == "day") return(end + k * step$count)
  months <- as.integer(format(end, "%Y")) * 12L + as.integer(format(end, "%m")) - 1L + k * step$count
  first_of <- function(m) as.Date(sprintf("%04d-%02d-01", m %/% 12L, m %% 12L + 1L))
  if (is_month_end(end)) first_of(months + 1L) - 1 else first_of(months) + as.integer(format(end, "%d")) - 1L
}

# Step index of each date from `end` (NA where the date is off the grid).
step_indices <- function(dates, end, step) {
  if (step$unit == "day") {
    diff <- as.integer(dates - end)
    return(ifelse(diff %% step$count == 0L, diff %/% step$count, NA_integer_))
  }
  months <- (as.integer(format(dates, "%Y")) - as.integer(format(end, "%Y"))) * 12L +
    as.integer(format(dates, "%m")) - as.integer(format(end, "%m"))
  k <- ifelse(months %% step$count == 0L, months %/% step$count, NA_integer_)
  on_grid <- !is.na(k) & vapply(seq_along(dates), function(i)
    !is.na(k[i]) && add_steps(end, k[i], step) == dates[i], logical(1))
  ifelse(on_grid, k, NA_integer_)
}

# Forecast steps (1 = the first step after training ended) for the input's dates; stops when the input starts
# on or before the training end, has dates off the model's step grid, or starts too long after the end.
forecast_steps <- function(dates, training_end, max_gap_days, step = NULL) {
  end <- as.Date(training_end)
  step <- parse_step(step)
  first <- min(dates)
  if (first <= end) stop("input starts on ", format(first), ", on or before the model's training end ",
                         format(end), call. = FALSE)
  steps <- step_indices(dates, end, step)
  if (anyNA(steps)) {
    off <- sort(dates[is.na(steps)])
    stop("input date(s) ", shown(format(off)), " are not on the model's step grid (", step$text,
         " from its training end ", format(end), ": ", paste(format(add_steps(end, 1:3, step)), collapse = ", "),
         ", ...)", call. = FALSE)
  }
  k <- min(steps)
  gap <- as.integer(add_steps(end, k - 1L, step) - end)
  if (length(max_gap_days) == 1 && !is.na(max_gap_days) && gap > max_gap_days) {
    if (step$unit == "day" && step$count == 1L)
      stop("input starts on ", format(first), ", ", gap, " days after the model's training end ", format(end),
           "; at most ", max_gap_days, " days are allowed (retrain the model)", call. = FALSE)
    stop("input starts on ", format(first), ", step ", k, " of ", step$text, " after the model's training end ",
         format(end), ": the ", k - 1L, " step(s) before it span ", gap, " days; at most ", max_gap_days,
         " days are allowed (retrain the model)", call. = FALSE)
  }
  steps
}

# Called by score_one for each postcode (not for scorer.R versions): loads the model's packages, types the
# input as fitted, and for time-series models with a known training end records the forecast steps.
model_aware_newdata <- function(postcode, model, newdata) {
  if (!is.null(.scoring$user_score) || is.null(.model_aware$postcodes)) return(newdata)
  entry <- .model_aware$postcodes[[postcode]]
  if (is.null(entry)) return(newdata)
  profile <- .model_aware$profiles[[entry$profile + 1L]]
  load_model_packages(unlist(profile$packages), unlist(profile$attach))
  if (isTRUE(profile$time_series)) {
    if (!is.null(entry$training_end))
      attr(newdata, "forecast_steps") <- forecast_steps(newdata$date, entry$training_end, .model_aware$max_gap_days,
                                                        entry$step)
    return(newdata)
  }
  if (length(profile$prototype)) return(conform_newdata(newdata, profile$prototype))
  # No prototype (nls and other classes without terms): columns other models need as text are typed back
  # the way the CSV reader would have typed them.
  for (col in intersect(getOption("scoring.text_columns"), names(newdata)))
    newdata[[col]] <- utils::type.convert(newdata[[col]], as.is = TRUE)
  newdata
}

# forecast() far enough ahead to reach the input's last date; keep the input's dates only.
forecast_on_steps <- function(model, steps) {
  out <- forecast_model(model, max(steps))
  lapply(out, function(v) v[steps])
}

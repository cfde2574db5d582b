# Registration, R side: what each fitted model needs from its input and from R (its "profile").
#
#   prototype      the input columns the model reads, each with the type it was fitted with and, for
#                  factors, the fitted levels (terms' dataClasses, xlevels, contrasts; the training data
#                  for variables used only inside expressions). vetiver keeps a prototype the same way.
#   packages       namespaces to load before scoring: the package of the predict/forecast method that
#                  dispatches for the model's class (predict.gam lives in mgcv, not in stats).
#   attach         packages whose functions the formula calls (ns/bs: splines, s/te: mgcv): model.frame
#                  evaluates the formula where those names must be visible.
#   training_end   for time-series models: the calendar date of the last training observation, from the
#                  model's attribute `training_end`, else from a daily, monthly or quarterly ts with a
#                  calendar start.
#   step           for time-series models: the calendar time of one step ("1 day", "1 week", "1 month"),
#                  from the model's attribute `step`, else from the series' frequency.

DEFAULT_ATTACHED <- c("base", "stats", "utils", "methods", "graphics", "grDevices", "datasets")

# Index of installed packages' NAMESPACE files, built only when a name is not found among loaded ones.
.profile_index <- new.env()

namespace_index <- function() {
  if (!is.null(.profile_index$ns)) return(.profile_index$ns)
  ip <- utils::installed.packages()
  ns <- lapply(rownames(ip), function(p) tryCatch(
    parseNamespaceFile(p, dirname(system.file(package = p))), error = function(e) NULL))
  names(ns) <- rownames(ip)
  .profile_index$ns <- Filter(Negate(is.null), ns)
  .profile_index$priority <- stats::setNames(ip[, "Priority"], rownames(ip))
  .profile_index$ns
}

# The package whose S3 method `generic` dispatches for this class vector, or NA.
method_package <- function(generic, classes) {
  for (cl in classes) {
    m <- utils::getS3method(generic, cl, optional = TRUE)
    if (!is.null(m)) return(environmentName(environment(m)))
    for (p in names(namespace_index())) {
      s3 <- namespace_index()[[p]]$S3methods
      if (length(s3) && any(s3[, 1] == generic & s3[, 2] == cl)) return(p)
    }
  }
  NA_character_
}

exports_name <- function(info, name) {
  name %in% info$exports || any(vapply(info$exportPatterns, function(p) grepl(p, name), logical(1)))
}

# The package exporting a function called in a formula, preferring the model's own packages, then loaded
# namespaces, then base/recommended ones. NA when the default search path already has it (or nothing does:
# a user's function saved in the formula's environment).
function_package <- function(name, preferred) {
  for (p in DEFAULT_ATTACHED) if (exists(name, envir = asNamespace(p), inherits = FALSE)) return(NA_character_)
  index <- namespace_index()
  candidates <- names(index)[vapply(index, exports_name, logical(1), name = name)]
  if (!length(candidates)) return(NA_character_)
  prio <- .profile_index$priority[candidates]
  rank <- ifelse(candidates %in% preferred, 0, ifelse(candidates %in% loadedNamespaces(), 1,
                 ifelse(!is.na(prio), 2, 3)))
  candidates[order(rank, candidates)][1]
}

# Function names called in an expression; `pkg::f` gives the package directly.
called_functions <- function(expr, found = list(fns = character(0), pkgs = character(0))) {
  if (!is.call(expr)) return(found)
  head <- expr[[1]]
  if (is.name(head)) {
    h <- as.character(head)
    if (h %in% c("::", ":::")) return(list(fns = found$fns, pkgs = c(found$pkgs, as.character(expr[[2]]))))
    found$fns <- c(found$fns, h)
  } else {
    found <- called_functions(head, found)
  }
  if (length(expr) > 1) for (i in 2:length(expr)) {
    arg <- expr[[i]]
    if (is.call(arg)) found <- called_functions(arg, found)
  }
  found
}

type_of <- function(x) {
  if (is.null(x)) return("any")
  if (is.ordered(x)) return("ordered")
  if (is.factor(x)) return("factor")
  if (inherits(x, "Date")) return("Date")
  if (is.logical(x)) return("logical")
  if (is.character(x)) return("character")
  if (is.numeric(x) && is.null(dim(x))) return("numeric")
  "any"
}

data_class_type <- function(dc) {
  switch(dc, numeric = "numeric", logical = "logical", factor = "factor", ordered = "ordered",
         character = "character", "any")
}

model_terms <- function(m) {
  tt <- tryCatch(stats::terms(m), error = function(e) NULL)
  if (inherits(tt, "terms")) tt else NULL
}

# The input columns the model reads: list of list(name, type, levels?, contrasts?, levels_of?).
model_prototype <- function(m, tt) {
  if (is.null(tt)) return(NULL)
  vars <- all.vars(stats::delete.response(tt))
  dc <- attr(tt, "dataClasses")
  data <- if (is.data.frame(m$data)) m$data else if (is.data.frame(m$model)) m$model else NULL
  xlev <- if (is.list(m$xlevels)) m$xlevels else list()
  contr <- if (is.list(m$contrasts)) m$contrasts else list()
  # A name in the formula is an input column unless it is a constant or global (pi, a fitted lambda):
  # with the training data at hand, columns are what it has; without, what the formula's scope lacks.
  is_column <- function(v) {
    if (!is.null(dc) && v %in% names(dc)) return(TRUE)
    if (is.data.frame(m$data)) return(v %in% names(m$data))
    if (is.data.frame(m$model) && v %in% names(m$model)) return(TRUE)
    env <- environment(tt)
    !exists(v, envir = if (is.environment(env)) env else baseenv())
  }
  vars <- Filter(is_column, vars)
  cols <- lapply(vars, function(v) {
    type <- if (!is.null(dc) && v %in% names(dc)) data_class_type(dc[[v]]) else "any"
    if (type == "any" && !is.null(data) && v %in% names(data)) type <- type_of(data[[v]])
    col <- list(name = v, type = type)
    if (type %in% c("factor", "ordered", "character")) {
      lv <- xlev[[v]]
      if (is.null(lv) && !is.null(data) && v %in% names(data))
        lv <- if (is.factor(data[[v]])) levels(data[[v]]) else if (type != "character") sort(unique(as.character(data[[v]])))
      if (is.null(lv) && is.matrix(contr[[v]])) lv <- rownames(contr[[v]])  # nlme keeps contrast matrices
      if (!is.null(lv)) col$levels <- I(as.character(lv))
    }
    if (is.character(contr[[v]])) col$contrasts <- contr[[v]][1]
    col
  })
  names(cols) <- vars
  # factor(v) / as.factor(v) / ordered(v) in the formula: v's values must be among the fitted levels.
  for (term in names(xlev)) {
    e <- tryCatch(str2lang(term), error = function(e) NULL)
    if (is.call(e) && length(e) == 2 && is.name(e[[2]]) && as.character(e[[1]]) %in% c("factor", "as.factor", "ordered")) {
      v <- as.character(e[[2]])
      if (!is.null(cols[[v]]) && is.null(cols[[v]]$levels)) {
        cols[[v]]$levels <- I(as.character(xlev[[term]]))
        cols[[v]]$levels_of <- term
      }
    }
  }
  unname(cols)
}

# The series a time-series model was fitted to (forecast's getResponse knows most classes).
model_series <- function(m) {
  y <- tryCatch(forecast::getResponse(m), error = function(e) NULL)
  if (is.null(y)) for (f in c("x", "y", "data", "series")) if (stats::is.ts(m[[f]])) { y <- m[[f]]; break }
  y
}

# The calendar step of a series of this frequency, where the frequency says it: 1 (a plain vector), 7
# (days with a weekly season), 365: days; 52: weeks; 12: months; 4: quarters. Anything else (24 hours, 5
# working days) has no calendar step: the data scientist gives it (attribute `step`, --step).
step_of_frequency <- function(f) {
  if (is.na(f)) return(NA_character_)
  if (any(abs(f - c(1, 7, 365, 365.25, 366)) < 1e-6)) return("1 day")
  if (abs(f - 52) < 0.2) return("1 week")
  if (abs(f - 12) < 1e-6) return("1 month")
  if (abs(f - 4) < 1e-6) return("3 months")
  NA_character_
}

# The date of the last training observation and the model's step, and where each came from.
training_end_of <- function(m) {
  given <- attr(m, "training_end", exact = TRUE)
  given_step <- attr(m, "step", exact = TRUE)
  y <- model_series(m)
  frequency <- if (!is.null(y) && stats::is.ts(y)) stats::frequency(y) else NA_real_
  step <- step_of_frequency(frequency)
  step_source <- if (is.na(step)) NA_character_ else sprintf("ts frequency %g", frequency)
  if (!is.null(given_step)) {
    if (!is.character(given_step) || length(given_step) != 1 || is.na(given_step))
      stop("attribute step is not one string such as '1 week': ", format(given_step)[1], call. = FALSE)
    step <- given_step
    step_source <- "model attribute step"
  }
  out <- list(date = NA_character_, source = NA_character_, frequency = frequency, step = step,
              step_source = step_source)
  if (!is.null(given)) {
    d <- tryCatch(as.Date(given), error = function(e) NA)
    if (length(d) != 1 || is.na(d)) stop("attribute training_end is not a date: ", format(given)[1], call. = FALSE)
    out$date <- format(d)
    out$source <- "model attribute training_end"
    return(out)
  }
  if (!is.null(y) && stats::is.ts(y)) {
    tp <- stats::tsp(y)
    if (tp[1] >= 1900 && tp[1] < 2200) {
      year <- floor(tp[1] + 1e-9)
      if (tp[3] %in% c(365, 365.25, 366)) {
        # A daily series with a calendar start, e.g. ts(x, start = c(2024, 45), frequency = 365).
        first <- as.Date(sprintf("%d-01-01", as.integer(year))) + round((tp[1] - year) * tp[3])
        out$date <- format(first + length(y) - 1)
        out$source <- "daily ts calendar"
      } else if (tp[3] %in% c(4, 12)) {
        # Monthly or quarterly with a calendar start, e.g. ts(x, start = c(2024, 3), frequency = 12): the
        # last period, labelled by its first day (2026-10-01 for October; a quarter by its first month).
        last <- round(tp[2] * tp[3])
        months_per <- 12 / tp[3]
        month <- (last %% tp[3]) * months_per + 1
        out$date <- sprintf("%04d-%02d-01", as.integer(last %/% tp[3]), as.integer(month))
        out$source <- if (tp[3] == 12) "monthly ts calendar" else "quarterly ts calendar"
      }
    }
  }
  out
}

model_profile <- function(m) {
  ts_model <- is_ts_model(m)
  classes <- class(m)
  packages <- character(0)
  if (ts_model) {
    packages <- c(packages, "forecast")
  } else {
    p <- method_package("predict", classes)
    if (!is.na(p)) packages <- c(packages, p)
  }
  tt <- if (ts_model) NULL else model_terms(m)
  attach <- character(0)
  if (!is.null(tt)) {
    found <- called_functions(tt)
    # predvars (ns with its knots) and the formula as written (gam's s() is not in its terms).
    fitted_formula <- tryCatch(stats::formula(m), error = function(e) NULL)
    for (extra in list(attr(tt, "predvars"), fitted_formula)) {
      if (is.null(extra)) next
      more <- called_functions(extra)
      found <- list(fns = c(found$fns, more$fns), pkgs = c(found$pkgs, more$pkgs))
    }
    fns <- setdiff(unique(found$fns), c("~", "+", "-", "*", "/", ":", "^", "%in%", "(", "|"))
    for (f in fns) {
      p <- function_package(f, packages)
      if (!is.na(p)) attach <- c(attach, p)
    }
    attach <- unique(c(attach, found$pkgs))
  }
  packages <- setdiff(unique(c(packages, attach)), DEFAULT_ATTACHED)
  end <- if (ts_model) training_end_of(m) else list(date = NA_character_, source = NA_character_, frequency = NA,
                                                   step = NA_character_, step_source = NA_character_)
  list(class = I(classes), time_series = ts_model, packages = I(packages),
       attach = I(setdiff(unique(attach), DEFAULT_ATTACHED)), prototype = model_prototype(m, tt),
       training_end = end$date, training_end_source = end$source, frequency = end$frequency,
       step = end$step, step_source = end$step_source)
}

profile_json <- function(profile) {
  jsonlite::toJSON(profile, auto_unbox = TRUE, null = "null", na = "null", digits = NA)
}

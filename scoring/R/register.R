# Registration-time checks, R side: every model must load; glm/lm models get a slim scoring copy.
#
# A fitted glm carries its training data several times over (model frame, residuals, qr, the formula's
# environment): ~90% of its bytes and of readRDS time. The slim copy keeps what predict() needs. It is
# stored only when it predicts *identically* to the original on the model's own training rows; otherwise
# the original bytes are stored. The manifest records the sha256 of both.

SLIM_FIELDS <- c("coefficients", "rank", "family", "terms", "xlevels", "contrasts", "call", "formula",
                 "offset", "na.action")

# A family's functions are closures over the frame of poisson(), make.link(), ...: serialized, that frame
# is ~70% of a slim model's bytes and of its readRDS time. Where every name a function uses means the same
# from stats' namespace as from its own frame, the function is re-homed there (saved as a reference to
# stats). Otherwise (e.g. power(1/3) needs its lambda) the family is kept as it is.
slim_family <- function(family) {
  stats_ns <- asNamespace("stats")
  closures <- names(family)[vapply(family, function(f) is.function(f) && !is.primitive(f), logical(1))]
  for (nm in closures) {
    f <- family[[nm]]
    env <- environment(f)
    names_used <- setdiff(all.names(body(f)), names(formals(f)))
    same <- vapply(names_used, function(v) identical(get0(v, envir = env), get0(v, envir = stats_ns)), logical(1))
    if (!all(same)) return(family)
  }
  for (nm in closures) environment(family[[nm]]) <- stats_ns
  family
}

slim_glm <- function(m) {
  s <- unclass(m)[intersect(SLIM_FIELDS, names(m))]
  if (inherits(s$family, "family")) s$family <- slim_family(s$family)
  s$qr <- structure(list(pivot = m$qr$pivot), class = "qr")
  environment(s$terms) <- globalenv()
  if (!is.null(s$formula)) environment(s$formula) <- globalenv()
  class(s) <- class(m)
  s
}

slim_is_identical <- function(m, s) {
  probe <- m$data
  if (!is.data.frame(probe) || nrow(probe) == 0) return(FALSE)
  probe <- probe[unique(c(seq_len(min(50, nrow(probe))), nrow(probe))), , drop = FALSE]
  a <- tryCatch(suppressWarnings(predict(m, newdata = probe, type = "response")), error = function(e) NULL)
  b <- tryCatch(suppressWarnings(predict(s, newdata = probe, type = "response")), error = function(e) NULL)
  !is.null(a) && !is.null(b) && identical(unname(a), unname(b))
}

# Returns "class|slimmed|<profile JSON>" for a readable model (slim copy written to slim_path when slimmed), or stops.
inspect_model <- function(path, slim_path, allow_slim) {
  m <- tryCatch(readRDS(path), error = function(e) stop("cannot read model: ", conditionMessage(e), call. = FALSE))
  profile <- model_profile(m)
  load_model_packages(profile$packages, profile$attach)  # the slim check predicts as scoring will
  slimmed <- FALSE
  if (allow_slim && (identical(class(m), c("glm", "lm")) || identical(class(m), "lm"))) {
    s <- slim_glm(m)
    if (slim_is_identical(m, s)) {
      saveRDS(s, slim_path)
      slimmed <- TRUE
    }
  }
  if (is_ts_model(m)) requireNamespace("forecast", quietly = TRUE)
  paste(class(m)[1], slimmed, profile_json(profile), sep = "|")
}

# Versions of the packages the models and the scorer need directly, as "name=version": the non-base
# namespaces loaded by now that no other loaded package imports (their own imports come with them).
package_versions <- function(extra) {
  base <- rownames(utils::installed.packages(priority = "base"))
  missing <- extra[!vapply(extra, requireNamespace, logical(1), quietly = TRUE)]
  if (length(missing)) stop("R package(s) not installed here: ", paste(missing, collapse = ", "), call. = FALSE)
  loaded <- setdiff(loadedNamespaces(), c(base, "data.table", "jsonlite"))
  imported <- unlist(lapply(loaded, function(p) names(getNamespaceImports(p))))
  pkgs <- union(setdiff(loaded, imported), setdiff(extra, base))
  vapply(sort(pkgs), function(p) paste0(p, "=", as.character(utils::packageVersion(p))), character(1))
}

# One call per folder: "class|slimmed|<profile JSON>" per model, or "error|<reason>" for a model that does not load.
inspect_models <- function(paths, slim_paths, allow_slim) {
  vapply(seq_along(paths), function(i) {
    tryCatch(inspect_model(paths[[i]], slim_paths[[i]], allow_slim),
             error = function(e) paste0("error|", gsub("[\r\n]+", " ", conditionMessage(e))))
  }, character(1))
}

# Shared-design scoring: glm/lm models that share one formula are scored from ONE model frame and model
# matrix, built for all their postcodes' rows, instead of one predict() (model.frame + model.matrix) each.
# Sourced by score.R. What it computes is what predict.lm/predict.glm compute (R 4.2 stats sources):
#   X <- model.matrix(Terms, model.frame(Terms, newdata, na.action = na.pass, xlev = xlevels), contrasts)
#   eta <- X[, piv] %*% beta[piv] + offset(s) in the formula + eval(call$offset, newdata)
#   volume <- family$linkinv(eta) for glm, eta for lm
# with each postcode's own coefficients and link inverse applied to its own block of rows.
#
# A model joins a group only when it is exactly c("glm", "lm") or "lm", full rank without NA coefficients,
# and every part of its formula is row-wise (the value for a row depends on that row alone), so that
# evaluating it on many postcodes' rows at once gives each row what predict() on that postcode alone gives.
# Models in a group share terms, factor levels, contrasts, offset= and the input's column types. Anything
# else (and any group whose shared build fails, e.g. a factor level a model never saw) stays on the generic
# path, which then fails or scores each postcode on its own. Per-postcode checks are not done here.

`%||%` <- function(a, b) if (is.null(a)) b else a

.shared_design <- new.env()
.shared_design$scored <- 0L  # postcodes scored here, for the shard's status and the tests

# Functions whose value for a row depends only on that row (given constant other arguments).
ROWWISE_FUNCTIONS <- c(
  "+", "-", "*", "/", "^", "%%", "%/%", "(", "==", "!=", "<", ">", "<=", ">=", "&", "|", "!", "%in%",
  "log", "log2", "log10", "log1p", "exp", "expm1", "sqrt", "abs", "sin", "cos", "tan", "asin", "acos", "atan",
  "sinh", "cosh", "tanh", "sinpi", "cospi", "floor", "ceiling", "round", "signif", "trunc", "sign", "pmin",
  "pmax", "ifelse", "is.na", "I", "offset", "as.numeric", "as.double", "as.integer", "as.character",
  "as.logical", "as.Date", "format", "weekdays", "months", "quarters", "julian"
)
# Only when no input column appears inside (then they are constants, e.g. x %in% c("a", "b")).
CONSTANT_ONLY <- c("c", ":", "seq_len", "list")
# Only as the outermost call of a model-frame variable: model.frame() then re-levels the result to the
# fitted levels (xlev), so the levels seen in the rows at hand do not matter. Nested, their codes would.
TOP_LEVEL_ONLY <- c("factor", "as.factor", "ordered", "as.ordered")
# Data-dependent unless the fitted parameters are in the call (terms' predvars puts them there).
NEEDS_ARGUMENTS <- list(poly = "coefs", ns = c("knots", "Boundary.knots"), bs = c("knots", "Boundary.knots"),
                        scale = c("center", "scale"))
HOME_NAMESPACES <- c("base", "stats", "splines")

# The function `name` as seen from `env` is the one base R / stats / splines define (not a user's own).
is_standard_function <- function(name, env) {
  f <- get0(name, envir = env, mode = "function")
  !is.null(f) && (is.primitive(f) || environmentName(environment(f)) %in% HOME_NAMESPACES)
}

# Walk one expression; returns the values of the constants it uses (non-column symbols), or NULL if it
# is not row-wise. `columns`: the input's column names.
rowwise_constants <- function(expr, env, columns, top = TRUE, found = list()) {
  if (is.null(found)) return(NULL)
  if (is.symbol(expr)) {
    name <- as.character(expr)
    if (name %in% columns) return(found)
    value <- get0(name, envir = env, inherits = TRUE)
    if (is.null(value) || is.function(value) || !is.atomic(value) || length(value) != 1) return(NULL)
    found[[name]] <- value
    return(found)
  }
  if (!is.call(expr)) return(if (is.atomic(expr) && length(expr) <= 1) found else NULL)
  head <- expr[[1]]
  if (!is.symbol(head)) return(NULL)
  fn <- as.character(head)
  if (!is_standard_function(fn, env)) return(NULL)
  if (fn %in% CONSTANT_ONLY) {
    if (length(intersect(all.vars(expr), columns))) return(NULL)
  } else if (fn %in% TOP_LEVEL_ONLY) {
    if (!top) return(NULL)
  } else if (!is.null(NEEDS_ARGUMENTS[[fn]])) {
    if (!all(NEEDS_ARGUMENTS[[fn]] %in% names(expr))) return(NULL)
  } else if (!fn %in% ROWWISE_FUNCTIONS) {
    return(NULL)
  }
  args <- as.list(expr)[-1]
  for (i in seq_along(args)) {
    arg <- args[[i]]
    named <- names(args)[i]
    # The fitted parameters of poly/ns/bs/scale are constants of any length.
    if (!is.null(named) && named %in% unlist(NEEDS_ARGUMENTS)) {
      if (is.call(arg) || is.symbol(arg)) return(NULL)
      next
    }
    if (is.character(arg)) next  # e.g. format(date, "%u")
    # factor(x, levels = ...): any further argument must be a constant.
    if (fn %in% TOP_LEVEL_ONLY && i > 1 && length(intersect(all.vars(arg), columns))) return(NULL)
    found <- rowwise_constants(arg, env, columns, top = FALSE, found = found)
    if (is.null(found)) return(NULL)
  }
  found
}

# What models must share to be scored from one design (terms, levels, contrasts, offset=, coefficient names,
# the input's column types), or NULL when this model stays on the generic path. Cheap: the formula itself
# is checked (row_constants) once per group and formula environment.
design_signature <- function(model, newdata) {
  cls <- class(model)
  if (!(identical(cls, c("glm", "lm")) || identical(cls, "lm"))) return(NULL)
  beta <- model$coefficients
  tt <- model$terms
  if (!is.numeric(beta) || anyNA(beta) || !inherits(tt, "terms") || is.null(model$rank) ||
      model$rank != length(beta) || length(model$qr$pivot) < length(beta)) return(NULL)
  if (identical(cls[1], "glm") && !(inherits(model$family, "family") && is.function(model$family$linkinv)))
    return(NULL)
  if (!is.environment(environment(tt))) return(NULL)
  environment(tt) <- NULL
  list(class = cls, terms = tt, coef_names = names(beta), pivot = model$qr$pivot[seq_along(beta)],
       xlevels = model$xlevels, contrasts = model$contrasts, call_offset = model$call$offset,
       columns = lapply(newdata, function(col) list(class(col), levels(col))))
}

# The constants (non-column symbols) the model's formula uses, when every part of it is row-wise; else NULL.
row_constants <- function(model, columns) {
  tt <- model$terms
  env <- environment(tt)
  constants <- list()
  for (e in as.list(attr(delete.response(tt), "predvars") %||% attr(delete.response(tt), "variables"))[-1]) {
    constants <- rowwise_constants(e, env, columns, found = constants)
    if (is.null(constants)) return(NULL)
  }
  # predict() evaluates offsets from its own frame, not the formula's environment: allow input columns and
  # base constants only, and standard functions as seen from both.
  for (e in c(as.list(attr(tt, "variables"))[-1][attr(tt, "offset")], list(model$call$offset))) {
    if (is.null(e)) next
    found <- rowwise_constants(e, env, columns)
    if (is.null(found) || !all(names(found) %in% c("pi", "T", "F")) ||
        is.null(rowwise_constants(e, asNamespace("stats"), columns))) return(NULL)
  }
  constants
}

# Linear predictor for all rows of one group, computed as predict.lm does on newdata.
group_linear_predictor <- function(model, newdata, block, betas) {
  tt <- terms(model)
  Terms <- delete.response(tt)
  m <- model.frame(Terms, newdata, na.action = na.pass, xlev = model$xlevels)
  if (!is.null(cl <- attr(Terms, "dataClasses"))) .checkMFClasses(cl, m)
  X <- model.matrix(Terms, m, contrasts.arg = model$contrasts)
  if (nrow(X) != length(block)) stop("the model frame lost rows")
  offset <- rep(0, nrow(X))
  if (!is.null(off.num <- attr(tt, "offset")))
    for (i in off.num) offset <- offset + eval(attr(tt, "variables")[[i + 1]], newdata, environment(tt))
  if (!is.null(model$call$offset)) offset <- offset + eval(model$call$offset, newdata, environment(tt))
  piv <- model$qr$pivot[seq_len(model$rank)]
  X <- X[, piv, drop = FALSE]
  if (ncol(X) != ncol(betas)) stop("the model matrix does not match the coefficients")
  # Row r gets the coefficients of its own postcode: one elementwise product for the whole group.
  .rowSums(X * betas[block, piv, drop = FALSE], nrow(X), ncol(X)) + offset
}

# `items`: list of list(model, newdata) (NULL for postcodes already failed). Returns a list of the same
# length: the volumes for the postcodes scored here, NULL for those left to the generic path.
shared_design_predict <- function(items) {
  out <- vector("list", length(items))
  if (identical(Sys.getenv("SCORING_SHARED_DESIGN"), "0")) return(out)  # switched off (benchmarks)
  groups <- list()  # each: list(signature, members)
  buckets <- list()  # coefficient names -> indices into groups (cheap first cut before identical())
  for (i in seq_along(items)) {
    it <- items[[i]]
    if (is.null(it)) next
    sig <- tryCatch(design_signature(it$model, it$newdata), error = function(e) NULL)
    if (is.null(sig)) next
    env <- environment(it$model$terms)
    key <- paste(sig$coef_names, collapse = "\r")
    g <- NULL
    for (j in buckets[[key]]) if (identical(groups[[j]]$signature, sig)) { g <- j; break }
    if (is.null(g)) {
      constants <- tryCatch(row_constants(it$model, names(it$newdata)), error = function(e) NULL)
      groups[[length(groups) + 1]] <- list(signature = sig, env = env, ok = !is.null(constants),
                                           constants = constants, members = integer(0))
      g <- length(groups)
      buckets[[key]] <- c(buckets[[key]], g)
    } else if (!identical(env, groups[[g]]$env)) {
      # Same formula, another environment: it must resolve to the same functions and constants.
      constants <- tryCatch(row_constants(it$model, names(it$newdata)), error = function(e) NULL)
      if (is.null(constants) || !identical(constants, groups[[g]]$constants)) next
    }
    groups[[g]]$members <- c(groups[[g]]$members, i)
  }
  for (grp in groups) {
    members <- grp$members
    if (!grp$ok || length(members) < 2) next  # not row-wise, or nothing shared (predict() is as fast)
    volumes <- tryCatch(group_volumes(items[members]), error = function(e) NULL)
    if (is.null(volumes)) next
    out[members] <- volumes
  }
  .shared_design$scored <- .shared_design$scored + sum(!vapply(out, is.null, logical(1)))
  out
}

group_volumes <- function(members) {
  rows <- vapply(members, function(it) nrow(it$newdata), integer(1))
  newdata <- data.table::rbindlist(lapply(members, `[[`, "newdata"))
  data.table::setDF(newdata)
  block <- rep.int(seq_along(members), rows)
  betas <- do.call(rbind, lapply(members, function(it) it$model$coefficients))
  eta <- group_linear_predictor(members[[1]]$model, newdata, block, betas)
  ends <- cumsum(rows)
  lapply(seq_along(members), function(k) {
    e <- eta[(ends[k] - rows[k] + 1L):ends[k]]
    family <- members[[k]]$model$family
    if (is.null(family)) e else family$linkinv(e)
  })
}

shared_design_scored <- function() .shared_design$scored

# Driver side: postcodes scored by the shared design so far, over every node.
shared_design_total <- function() {
  cl <- .scoring$cluster
  if (is.null(cl)) return(.shared_design$scored)
  sum(unlist(parallel::clusterCall(cl, shared_design_scored)))
}

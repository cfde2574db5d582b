# Recompute the service's accuracy metrics in R from the same numbers: forecast::accuracy() for ME, RMSE,
# MAE and MASE per postcode; direct computations for the rest and for every other group.
#   Rscript accuracy_check.R RESULTS_CSV ACTUALS_CSV METRICS_CSV OUT_CSV
suppressPackageStartupMessages(library(forecast))
args <- commandArgs(trailingOnly = TRUE)
res <- read.csv(args[1], colClasses = c(postcode = "character"))
act <- read.csv(args[2], colClasses = c(postcode = "character"))
ours <- read.csv(args[3], colClasses = c(key = "character"))   # straight into a data frame
stopifnot(is.numeric(ours$mae), is.numeric(ours$coverage_80), is.integer(ours$n))
res$date <- as.Date(res$date); act$date <- as.Date(act$date)

scale_of <- function(pc) {
  a <- act[act$postcode == pc, ]
  days <- seq(min(a$date), max(a$date), by = "day")
  y <- a$volume[match(days, a$date)]            # a daily series, NA where an actual is missing
  list(series = ts(y, frequency = 7), start = min(a$date), scale = mean(abs(diff(y, lag = 7)), na.rm = TRUE))
}
pairs <- merge(res, act, by = c("postcode", "date"), suffixes = c("", "_actual"))
pairs$lead <- as.integer(pairs$date - ave(as.numeric(res$date), res$postcode, FUN = min)[match(pairs$postcode, res$postcode)]) + 1L
pairs$error <- pairs$volume_actual - pairs$volume
pairs$scale <- vapply(pairs$postcode, function(pc) scale_of(pc)$scale, numeric(1))
winkler <- function(l, u, y, alpha) (u - l) + 2 / alpha * pmax(l - y, 0) + 2 / alpha * pmax(y - u, 0)

direct <- function(p) {
  i80 <- !is.na(p$lower_80) & !is.na(p$upper_80); i95 <- !is.na(p$lower_95) & !is.na(p$upper_95)
  y <- p$volume_actual
  c(n = nrow(p), me = mean(p$error), mae = mean(abs(p$error)), rmse = sqrt(mean(p$error^2)),
    wape = sum(abs(p$error)) / sum(abs(y)), mase = mean(abs(p$error) / p$scale),
    n_80 = sum(i80), coverage_80 = if (any(i80)) mean(p$lower_80[i80] <= y[i80] & y[i80] <= p$upper_80[i80]) else NA,
    winkler_80 = if (any(i80)) mean(winkler(p$lower_80[i80], p$upper_80[i80], y[i80], 0.2)) else NA,
    n_95 = sum(i95), coverage_95 = if (any(i95)) mean(p$lower_95[i95] <= y[i95] & y[i95] <= p$upper_95[i95]) else NA,
    winkler_95 = if (any(i95)) mean(winkler(p$lower_95[i95], p$upper_95[i95], y[i95], 0.05)) else NA)
}
out <- list()
add <- function(level, key, values, source) {
  row <- ours[ours$level == level & ours$key == key, ]
  if (nrow(row) != 1) stop("no row ", level, "/", key, " in the service's metrics")
  for (m in names(values)) out[[length(out) + 1]] <<- data.frame(level = level, key = key, metric = m,
    ours = as.numeric(row[[m]]), r = as.numeric(values[[m]]), source = source)
}
add("overall", "all", direct(pairs), "direct")
for (v in unique(pairs$model_version)) add("model_version", v, direct(pairs[pairs$model_version == v, ]), "direct")
for (l in sort(unique(pairs$lead))) add("lead", as.character(l), direct(pairs[pairs$lead == l, ]), "direct")
for (pc in unique(res$postcode)) {
  p <- pairs[pairs$postcode == pc, ]
  add("postcode", pc, direct(p), "direct")
  # forecast::accuracy: the forecast as a forecast object on the actuals' own daily series
  s <- scale_of(pc)
  f <- res[res$postcode == pc, ]; f <- f[order(f$date), ]
  offset <- as.integer(min(f$date) - s$start)
  fc <- structure(list(mean = ts(f$volume, start = tsp(s$series)[1] + offset / 7, frequency = 7), x = s$series),
                  class = "forecast")
  test <- window(s$series, start = tsp(fc$mean)[1], end = tsp(fc$mean)[2])
  a <- accuracy(fc, test, test = seq_along(test))[1, c("ME", "RMSE", "MAE", "MASE")]  # test set only
  names(a) <- c("me", "rmse", "mae", "mase")
  add("postcode", pc, a, "forecast::accuracy")
}
write.csv(do.call(rbind, out), args[4], row.names = FALSE)

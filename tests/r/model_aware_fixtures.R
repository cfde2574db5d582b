# Fixtures for tests/test_model_aware.py: models of several classes fitted on typed data, the input CSV
# written as any R user writes it (factors become their labels, logicals TRUE/FALSE), and what R's own
# predict()/forecast() give on the original, typed data frames.
#
#   Rscript model_aware_fixtures.R OUT_DIR START(YYYY-MM-DD) N_DAYS TS_GAP_DAYS
suppressPackageStartupMessages({library(splines); library(mgcv)})
args <- commandArgs(trailingOnly = TRUE)
out <- args[1]; start <- as.Date(args[2]); n <- as.integer(args[3]); gap <- as.integer(args[4])
set.seed(42)
dir.create(file.path(out, "typed"), recursive = TRUE); dir.create(file.path(out, "bases")); dir.create(file.path(out, "ts"))
days <- seq(start, by = "day", length.out = n)

typed_data <- function(k, days) {
  data.frame(date = days, weekday = as.integer(format(days, "%u")), month = factor(as.integer(format(days, "%m")), levels = 1:12),
             promo = sample(c(TRUE, FALSE, FALSE), length(days), TRUE), temp = round(rnorm(length(days), 10, 5), 1),
             region = rep_len(c("north", "south", "east"), length(days)),
             size = factor(sample(c("S", "M", "L"), length(days), TRUE), levels = c("S", "M", "L"), ordered = TRUE),
             stringsAsFactors = FALSE)
}
train <- typed_data(1, seq(as.Date("2024-01-01"), by = "day", length.out = 730))
train$volume <- rpois(nrow(train), exp(3 + 0.1 * as.integer(train$month) / 12 + 0.3 * train$promo + 0.01 * train$temp))
future <- typed_data(1, days)
typed <- list(
  "1000" = glm(volume ~ month + promo + temp, family = poisson, data = train),
  "1002" = lm(volume ~ region + temp + promo + size, data = train),
  "1004" = glm(volume ~ factor(weekday) + temp, family = quasipoisson, data = train),
  # No terms, so no prototype: `promo`, read as text for the others, must reach it as the CSV reader types it.
  "1006" = nls(volume ~ a * exp(b * as.numeric(promo)), data = train, start = list(a = 20, b = 0.3)))
rows <- list(); ref <- list()
for (pc in names(typed)) {
  saveRDS(typed[[pc]], file.path(out, "typed", paste0(pc, ".rds")))
  rows[[pc]] <- cbind(postcode = pc, future)
  ref[[pc]] <- data.frame(postcode = pc, date = format(days),
                          volume = as.numeric(predict(typed[[pc]], newdata = future, type = "response")))
}
input <- do.call(rbind, rows)
data.table::fwrite(input, file.path(out, "typed.csv"), dateTimeAs = "ISO")
write.csv(do.call(rbind, ref), file.path(out, "typed_reference.csv"), row.names = FALSE)

# Formula bases from splines and a mgcv smooth: the worker must load and attach those packages.
x_train <- data.frame(x = runif(400, 0, 10), f = factor(sample(c("a", "b"), 400, TRUE)))
x_train$y <- rpois(400, exp(1 + sin(x_train$x / 3) + 0.2 * (x_train$f == "b")))
x_future <- data.frame(date = days, x = seq(0.5, 9.5, length.out = n), f = factor(rep_len(c("a", "b"), n), levels = c("a", "b")))
bases <- list("1000" = lm(y ~ ns(x, df = 4), data = x_train),
              "1002" = glm(y ~ bs(x, df = 5) + f, family = poisson, data = x_train),
              "1004" = gam(y ~ s(x) + f, family = poisson, data = x_train),
              # Classes that scored right before model profiles existed must still do so with them.
              "1006" = lm(y ~ poly(x, 3) + f, data = x_train),
              "1008" = MASS::glm.nb(y ~ x + f, data = x_train),
              "1010" = loess(y ~ x, data = x_train),
              "1012" = nls(y ~ a * exp(b * sin(x / 3)), data = x_train, start = list(a = 2, b = 1)),
              "1014" = nlme::gls(y ~ x + f, data = x_train),
              "1016" = glm(I(y > 3) ~ x + f, family = binomial(link = "probit"), data = x_train),
              "1018" = glm(I(y + 1) ~ x + f, family = Gamma(link = "log"), data = x_train))
rows <- list(); ref <- list()
for (pc in names(bases)) {
  saveRDS(bases[[pc]], file.path(out, "bases", paste0(pc, ".rds")))
  rows[[pc]] <- cbind(postcode = pc, x_future)
  ref[[pc]] <- data.frame(postcode = pc, date = format(days),
                          volume = as.numeric(predict(bases[[pc]], newdata = x_future, type = "response")))
}
data.table::fwrite(do.call(rbind, rows), file.path(out, "bases.csv"), dateTimeAs = "ISO")
write.csv(do.call(rbind, ref), file.path(out, "bases_reference.csv"), row.names = FALSE)

# Time series whose training ends `gap` days before the input starts (so h = gap + n).
train_end <- start - gap - 1
y <- 100 + 20 * sin(2 * pi * (1:300) / 7) + cumsum(rnorm(300))
e <- forecast::ets(ts(y, frequency = 7), model = "ANA")
attr(e, "training_end") <- format(train_end)   # the data scientist's note on the model
first <- train_end - 299
a <- forecast::Arima(ts(y, start = c(as.integer(format(first, "%Y")), as.integer(format(first, "%j"))), frequency = 365),
                     order = c(1, 0, 1))        # a daily ts with a calendar start: R gives the end itself
hw <- HoltWinters(ts(y, frequency = 7))         # no training end anywhere: dates assumed
ts_models <- list("1000" = e, "1002" = a, "1004" = hw)
rows <- list(); ref <- list()
for (pc in names(ts_models)) {
  saveRDS(ts_models[[pc]], file.path(out, "ts", paste0(pc, ".rds")))
  rows[[pc]] <- data.frame(postcode = pc, date = days)
  h <- if (pc == "1004") n else gap + n
  fc <- forecast::forecast(ts_models[[pc]], h = h)
  keep <- (h - n + 1):h
  ref[[pc]] <- data.frame(postcode = pc, date = format(days), volume = as.numeric(fc$mean)[keep],
                          lower_80 = as.numeric(fc$lower[, 1])[keep], upper_95 = as.numeric(fc$upper[, 2])[keep])
}
data.table::fwrite(do.call(rbind, rows), file.path(out, "ts.csv"), dateTimeAs = "ISO")
write.csv(do.call(rbind, ref), file.path(out, "ts_reference.csv"), row.names = FALSE)
writeLines(format(train_end), file.path(out, "ts_training_end.txt"))

# Steps other than one day (folder steps/, input steps.csv): each postcode's input starts `gap` steps after
# its training end, so R's reference is the last n values of forecast(model, h = gap + n).
dir.create(file.path(out, "steps"))
months_back <- function(d, k) seq(d, by = "-1 month", length.out = k + 1)[k + 1]   # d minus k months
first_monday <- start + (8 - as.integer(format(start, "%u"))) %% 7     # the weekly input's first date
first_month <- as.Date(format(seq(start, by = "month", length.out = 2)[2], "%Y-%m-01"))  # the 1st after start

weekly <- forecast::ets(ts(200 + cumsum(rnorm(120)), frequency = 52), model = "AAN")
attr(weekly, "training_end") <- format(first_monday - 7 * (gap + 1))  # a Monday; frequency 52 gives the step

ym <- 100 + 10 * sin(2 * pi * (1:72) / 12) + cumsum(rnorm(72, sd = 0.5))
month_train <- months_back(first_month, gap + 1)                      # a 1st of the month
ts_start <- months_back(month_train, 71)
monthly <- forecast::ets(ts(ym, start = c(as.integer(format(ts_start, "%Y")), as.integer(format(ts_start, "%m"))),
                            frequency = 12), model = "ANA")           # end and step from the ts calendar

month_end <- forecast::Arima(ts(ym, frequency = 12), order = c(1, 0, 0))
attr(month_end, "training_end") <- format(months_back(first_month, gap) - 1)  # a month's last day: month ends

every_other <- forecast::Arima(ts(y[1:200], frequency = 7), order = c(1, 0, 1))
attr(every_other, "training_end") <- format(start - 2 * (gap + 1))
attr(every_other, "step") <- "2 days"                                 # only the data scientist knows this one

step_models <- list("2000" = weekly, "2002" = monthly, "2004" = month_end, "2006" = every_other)
dates_of <- list("2000" = first_monday + 7 * (0:(n - 1)),
                 "2002" = seq(first_month, by = "month", length.out = n),
                 "2004" = seq(first_month, by = "month", length.out = n + 1)[-1] - 1,
                 "2006" = start + 2 * (0:(n - 1)))
rows <- list(); ref <- list()
for (pc in names(step_models)) {
  saveRDS(step_models[[pc]], file.path(out, "steps", paste0(pc, ".rds")))
  rows[[pc]] <- data.frame(postcode = pc, date = dates_of[[pc]])
  fc <- forecast::forecast(step_models[[pc]], h = gap + n)
  keep <- (gap + 1):(gap + n)
  ref[[pc]] <- data.frame(postcode = pc, date = format(dates_of[[pc]]), volume = as.numeric(fc$mean)[keep],
                          lower_80 = as.numeric(fc$lower[, 1])[keep], upper_95 = as.numeric(fc$upper[, 2])[keep])
}
data.table::fwrite(do.call(rbind, rows), file.path(out, "steps.csv"), dateTimeAs = "ISO")
write.csv(do.call(rbind, ref), file.path(out, "steps_reference.csv"), row.names = FALSE)

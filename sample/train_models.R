# Sample trainer: synthetic daily parcel volumes per postcode (weekday pattern, yearly seasonality, trend,
# public holidays), one model per postcode saved with saveRDS, and the input data to score them with.
#
#   Rscript sample/train_models.R --out DIR --n 300 [--kind glm|ets|mixed] [--input FILE]
#                                 [--start 2026-11-23] [--horizon 60] [--history 730] [--seed 1]
#                                 [--train-end 2026-11-20]
#
# glm: Poisson regression on calendar features. ets: forecast::ets on the weekly-seasonal daily series,
# with its last training day recorded on the model (attribute `training_end`), so scoring places the
# forecast on the input's dates. mixed: every 10th postcode gets an ets model, the rest glm.
# Training data ends on --train-end (default: the day before --start): models retrained less often than
# they are scored.

args <- commandArgs(trailingOnly = TRUE)
opt <- list(out = NULL, n = "300", kind = "glm", input = "", start = "", horizon = "60", history = "730",
            seed = "1", "train-end" = "")
for (i in seq(1, length(args), by = 2)) opt[[sub("^--", "", args[i])]] <- args[i + 1]
if (is.null(opt$out)) stop("--out DIR is required")
n <- as.integer(opt$n); horizon <- as.integer(opt$horizon); history <- as.integer(opt$history)
start <- if (nzchar(opt$start)) as.Date(opt$start) else Sys.Date() + 1
set.seed(as.integer(opt$seed))
dir.create(opt$out, recursive = TRUE, showWarnings = FALSE)

postcodes <- sprintf("%04d", 1000 + 2 * seq_len(n))
holidays <- function(d) as.integer(format(d, "%m-%d") %in% c("01-01", "05-01", "08-01", "12-25", "12-26"))
train_end <- if (nzchar(opt[["train-end"]])) as.Date(opt[["train-end"]]) else start - 1
if (train_end >= start) stop("--train-end must be before --start")
train_days <- seq(train_end - history + 1, train_end, by = "day")
future_days <- seq(start, by = "day", length.out = horizon)

simulate <- function(days, level, weekly, trend, season) {
  wd <- as.integer(format(days, "%u"))
  doy <- as.numeric(format(days, "%j"))
  mu <- exp(level + weekly[wd] + season * sin(2 * pi * doy / 365.25) + trend * as.numeric(days - days[1]) / 365
            - 1.5 * holidays(days))
  rpois(length(days), mu)
}

fit_glm <- function(train) {
  glm(volume ~ factor(format(date, "%u")) + sin(2 * pi * as.numeric(format(date, "%j")) / 365.25) +
        cos(2 * pi * as.numeric(format(date, "%j")) / 365.25) + as.numeric(date) + holiday,
      family = poisson, data = train)
}

fit_ets <- function(train) {
  model <- forecast::ets(stats::ts(train$volume, frequency = 7), model = "ANA")
  attr(model, "training_end") <- format(max(train$date))  # one step = one day after this date
  model
}

fit_one <- function(i) {
  weekly <- c(0.25, 0.1, 0.05, 0.05, 0.15, -0.4, -1.6) + rnorm(7, 0, 0.05)
  train <- data.frame(date = train_days, holiday = holidays(train_days))
  train$volume <- simulate(train_days, log(runif(1, 20, 400)), weekly, rnorm(1, 0.05, 0.05), runif(1, 0.05, 0.3))
  ets_here <- opt$kind == "ets" || (opt$kind == "mixed" && i %% 10 == 0)
  model <- if (ets_here) fit_ets(train) else fit_glm(train)
  saveRDS(model, file.path(opt$out, paste0(postcodes[i], ".rds")))
  ets_here
}

if (opt$kind != "glm") suppressMessages(requireNamespace("forecast", quietly = TRUE))  # quiet before forking
cores <- max(1L, parallel::detectCores())
seeds <- sample.int(.Machine$integer.max, n)
kinds <- parallel::mclapply(seq_len(n), function(i) { set.seed(seeds[i]); fit_one(i) }, mc.cores = cores)
if (nzchar(opt$input)) {
  input <- expand.grid(date = future_days, postcode = postcodes, stringsAsFactors = FALSE)[, c("postcode", "date")]
  input$holiday <- holidays(input$date)
  data.table::fwrite(input, opt$input, dateTimeAs = "ISO")
}
cat(sprintf("trained %d models (%d ets) in %s\n", n, sum(unlist(kinds)), opt$out))

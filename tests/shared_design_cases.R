# Test helpers for the shared-design path (scoring/R/shared_design.R), sourced into the rpy2 session after
# score.R. Real models fitted here, scored through score_chunk() (the code the worker nodes run), compared
# with R's own predict(type = "response") on each postcode's rows.

sd_postcodes <- sprintf("%04d", 2000 + seq_len(6))

# Training data for one postcode: numeric x, a 3-level factor f, an exposure, a date; responses of each kind.
sd_training <- function(seed, n = 150) {
  set.seed(seed)
  d <- data.frame(date = as.Date("2025-01-01") + seq_len(n), x = runif(n, 0, 2),
                  f = sample(c("a", "b", "c"), n, replace = TRUE), exposure = runif(n, 1, 5))
  eta <- 0.3 + 0.5 * d$x + c(a = 0, b = 0.4, c = -0.3)[d$f]
  d$count <- rpois(n, exp(eta) * d$exposure)
  d$hit <- rbinom(n, 1, plogis(eta - 0.8))
  d$amount <- rgamma(n, shape = 3, rate = 3 / exp(eta))
  d$level <- 10 + 2 * eta + rnorm(n)
  d
}

# The input rows to score: `rows` per postcode from 2027-01-01; `only_a`: postcodes whose f is always "a".
sd_input <- function(rows = 12, only_a = character(0), new_level = character(0), na_x = character(0)) {
  out <- lapply(seq_along(sd_postcodes), function(i) {
    pc <- sd_postcodes[i]
    set.seed(100 + i)
    d <- data.frame(postcode = pc, date = as.Date("2027-01-01") + seq_len(rows) - 1, x = runif(rows, 0, 2),
                    f = rep(c("a", "b", "c"), length.out = rows), exposure = runif(rows, 1, 5))
    if (pc %in% only_a) d$f <- "a"
    if (pc %in% new_level) d$f[2] <- "zzz"
    if (pc %in% na_x) d$x[3] <- NA
    d
  })
  do.call(rbind, out)
}

# Fit one model per postcode with `fit(data)`; slim = TRUE stores them as registration does.
sd_models <- function(fit, slim = FALSE) {
  lapply(seq_along(sd_postcodes), function(i) {
    m <- fit(sd_training(i))
    if (slim) slim_glm(m) else m
  })
}

# Score the models through score_chunk; compare with predict(). Returns a list the Python tests assert on.
sd_check <- function(models, input = sd_input()) {
  dir <- tempfile("sd-")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE))
  paths <- file.path(dir, paste0(sd_postcodes, ".rds"))
  for (i in seq_along(models)) saveRDS(models[[i]], paths[i])
  csv <- file.path(dir, "input.csv")
  data.table::fwrite(input, csv, dateTimeAs = "ISO")
  load_input(csv, sd_postcodes)
  .scoring$horizon <- 0
  before <- shared_design_scored()
  r <- score_chunk(sd_postcodes, paths)
  shared <- shared_design_scored() - before
  scored <- setdiff(sd_postcodes, names(r$failures))
  rel <- vapply(scored, function(pc) {
    model <- readRDS(paths[match(pc, sd_postcodes)])
    rows <- input[input$postcode == pc, ]
    expected <- suppressWarnings(as.numeric(predict(model, newdata = rows, type = "response")))
    got <- r$results$volume[r$results$postcode == pc]
    if (length(got) != length(expected)) return(Inf)
    max(abs(got - expected) / pmax(abs(expected), 1e-300))
  }, numeric(1))
  list(shared = shared, scored = scored, max_rel_diff = if (length(rel)) max(rel) else 0,
       failures = as.list(r$failures))
}

# For each (training end, step, date) of a CSV, the worker's step index (R/model_aware.R step_indices;
# NA off the grid) and the date of step 1..3 (add_steps); writes end,step,date,k,grid.
#   Rscript step_cases.R SCORING_R_DIR CASES_CSV OUT_CSV
args <- commandArgs(trailingOnly = TRUE)
source(file.path(args[1], "score.R")); source(file.path(args[1], "model_aware.R"))
cases <- utils::read.csv(args[2], colClasses = "character")
out <- do.call(rbind, lapply(split(cases, paste(cases$end, cases$step)), function(g) {
  end <- as.Date(g$end[1]); step <- parse_step(g$step[1])
  data.frame(end = g$end, step = g$step, date = g$date, k = step_indices(as.Date(g$date), end, step),
             grid = paste(format(add_steps(end, 1:3, step)), collapse = " "))
}))
utils::write.csv(out, args[3], row.names = FALSE, na = "NA")

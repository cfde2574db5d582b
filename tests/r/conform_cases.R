# Reads one CSV row of hostile values (column c<i> = case i) as the worker does (data.table::fread, text
# columns as text) and converts each with conform_column(); writes case,ok,message.
#   Rscript conform_cases.R SCORING_R_DIR CASES_JSON VALUES_CSV OUT_CSV
args <- commandArgs(trailingOnly = TRUE)
source(file.path(args[1], "score.R")); source(file.path(args[1], "model_aware.R"))
cases <- jsonlite::fromJSON(args[2], simplifyVector = FALSE)
text <- character(0)
for (i in seq_along(cases)) if (cases[[i]]$type %in% c("factor", "ordered", "character", "logical")) text <- c(text, paste0("c", i - 1))
dt <- data.table::fread(args[3], colClasses = list(character = text), na.strings = c("", "NA"), showProgress = FALSE)
out <- lapply(seq_along(cases), function(i) {
  col <- cases[[i]]; col$name <- paste0("c", i - 1)
  r <- tryCatch({ conform_column(dt[[col$name]], col); "" }, error = function(e) conditionMessage(e))
  data.frame(case = i - 1, ok = !nzchar(r), message = r)
})
write.csv(do.call(rbind, out), args[4], row.names = FALSE)

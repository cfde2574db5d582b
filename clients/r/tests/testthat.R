library(testthat)
library(rscoring)

test_check("rscoring")

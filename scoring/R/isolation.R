# Node isolation: a postcode whose R process dies (quit(), a segfault, the kernel's OOM killer) fails alone.
#
# Scoring always runs on PSOCK nodes (at least one), never in the driver: a model that ends its R process
# then only takes its node down. The driver sees "error reading from connection", starts fresh nodes,
# and scores that batch again one postcode at a time, so the postcode that kills a node is named, fails
# with the reason, and the others are scored. Sourced after score.R into the driver session.

.isolation <- new.env()
.isolation$nodes <- 1L
.isolation$args <- NULL
.isolation$script <- ""
.isolation$models <- NULL

DIED <- paste("the R process scoring this postcode died (quit(), a crash such as a segfault, or out of",
              "memory); the node was restarted and the rest of the shard scored:")

# `script` is score.R: the nodes source it as soon as they are up (warm_node), also the single node here.
spawn_isolated_nodes <- function(n, script = "") {
  spawn_nodes(n, script)
  .isolation$nodes <- max(1L, as.integer(n))
  .isolation$script <- script
  .isolation$models <- NULL
  if (is.null(.scoring$cluster)) new_isolated_cluster()
  invisible(n)
}

new_isolated_cluster <- function() {
  .scoring$cluster <- parallel::makePSOCKcluster(.isolation$nodes)
  if (nzchar(.isolation$script)) parallel::clusterCall(.scoring$cluster, warm_node, .isolation$script)
}

# model_aware.R's prepare_models, remembered so that restarted nodes get the same profiles.
prepare_isolated_models <- function(path, this_file) {
  .isolation$models <- list(path, this_file)
  prepare_models(path, this_file)
}

start_isolated_nodes <- function(script, input_path, postcodes, scorer_path, horizon) {
  .isolation$args <- list(script, input_path, postcodes, scorer_path, horizon)
  start_nodes(script, input_path, postcodes, scorer_path, horizon)
}

# Close every node (a dead one cannot be told to stop: closing its socket is enough), then start and
# initialise new ones. Results already collected stay in the driver.
restart_nodes <- function() {
  for (node in .scoring$cluster) {
    try(parallel::stopCluster(structure(list(node), class = c("SOCKcluster", "cluster"))), silent = TRUE)
    try(close(node$con), silent = TRUE)
  }
  new_isolated_cluster()
  if (!is.null(.isolation$models)) do.call(prepare_models, .isolation$models)
  do.call(start_nodes, .isolation$args)
}

score_batch_isolated <- function(postcodes, files, offsets, sizes) {
  tried <- tryCatch(score_batch(postcodes, files, offsets, sizes), error = function(e) e)
  if (!inherits(tried, "error")) return(tried)
  restart_nodes()
  failures <- character(0)
  for (i in seq_along(postcodes)) {
    one <- tryCatch(score_batch(postcodes[i], files[i], offsets[i], sizes[i]), error = function(e) e)
    if (inherits(one, "error")) {
      failures[postcodes[i]] <- paste(DIED, gsub("[\r\n]+", " ", conditionMessage(one)))
      restart_nodes()
    } else {
      failures <- c(failures, one)
    }
  }
  failures
}

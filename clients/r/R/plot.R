# Forecasts of chosen postcodes with their 80% and 95% bands.

forecast_plot <- function(results, postcodes = NULL, engine = c("auto", "base", "ggplot2")) {
  engine <- match.arg(engine)
  needed <- c("postcode", "date", "volume")
  if (!is.data.frame(results) || !all(needed %in% names(results))) {
    stop("results: a data frame from run_results() or model_latest()", call. = FALSE)
  }
  if (is.null(postcodes)) postcodes <- utils::head(sort(unique(results$postcode)), 4L)
  unknown <- setdiff(postcodes, results$postcode)
  if (length(unknown)) {
    stop("postcode(s) not in the results: ", paste(unknown, collapse = ", "), call. = FALSE)
  }
  data <- results[results$postcode %in% postcodes, , drop = FALSE]
  data <- data[order(data$postcode, data$date), , drop = FALSE]
  if (engine == "ggplot2" || (engine == "auto" && requireNamespace("ggplot2", quietly = TRUE))) {
    if (!requireNamespace("ggplot2", quietly = TRUE)) {
      stop("engine = \"ggplot2\" needs the ggplot2 package", call. = FALSE)
    }
    return(ggplot_forecast(data))
  }
  base_forecast(data, postcodes)
  invisible(data)
}

band <- function(d, lower, upper) {
  all(c(lower, upper) %in% names(d)) && any(!is.na(d[[lower]]) & !is.na(d[[upper]]))
}

base_forecast <- function(data, postcodes) {
  n <- length(postcodes)
  old <- graphics::par(mfrow = c(ceiling(n / min(n, 2L)), min(n, 2L)), mar = c(3, 4, 2, 1))
  on.exit(graphics::par(old))
  for (pc in postcodes) {
    d <- data[data$postcode == pc, , drop = FALSE]
    limits <- range(unlist(d[intersect(c("volume", "lower_95", "upper_95"), names(d))]), na.rm = TRUE)
    graphics::plot(d$date, d$volume, type = "n", ylim = limits, xlab = "", ylab = "volume",
                   main = paste("postcode", pc), xaxt = "n")
    graphics::axis.Date(1, d$date)
    for (level in list(c("lower_95", "upper_95", 0.25), c("lower_80", "upper_80", 0.45))) {
      if (band(d, level[1], level[2])) {
        ok <- !is.na(d[[level[1]]]) & !is.na(d[[level[2]]])
        graphics::polygon(c(d$date[ok], rev(d$date[ok])), c(d[[level[1]]][ok], rev(d[[level[2]]][ok])),
                          col = grDevices::adjustcolor("steelblue", as.numeric(level[3])), border = NA)
      }
    }
    graphics::lines(d$date, d$volume, lwd = 2, col = "navy")
  }
}

ggplot_forecast <- function(data) {
  plot <- ggplot2::ggplot(data, ggplot2::aes(x = date))
  # Fixed column names: aes() evaluates lazily, so no loop variable may appear in it.
  if (band(data, "lower_95", "upper_95")) {
    plot <- plot + ggplot2::geom_ribbon(ggplot2::aes(ymin = lower_95, ymax = upper_95),
                                        fill = "steelblue", alpha = 0.25, na.rm = TRUE)
  }
  if (band(data, "lower_80", "upper_80")) {
    plot <- plot + ggplot2::geom_ribbon(ggplot2::aes(ymin = lower_80, ymax = upper_80),
                                        fill = "steelblue", alpha = 0.45, na.rm = TRUE)
  }
  plot + ggplot2::geom_line(ggplot2::aes(y = volume), colour = "navy", linewidth = 0.8) +
    ggplot2::facet_wrap(ggplot2::vars(postcode), scales = "free_y") +
    ggplot2::labs(x = NULL, y = "volume", caption = "bands: 80% and 95% prediction intervals")
}

utils::globalVariables(c("volume", "postcode", "lower_80", "upper_80", "lower_95", "upper_95"))

# Connection to the service and the one function that speaks HTTP to it.

scoring_connect <- function(url, key = Sys.getenv("SCORING_FUNCTION_KEY"), token = NULL,
                            timeout = 300) {
  if (!is.character(url) || length(url) != 1L || !grepl("^https?://[^/]+", url)) {
    stop("url must be the service's address, e.g. \"https://<app>.azurewebsites.net\"", call. = FALSE)
  }
  url <- sub("/+$", "", sub("/api/?$", "", sub("/+$", "", url)))
  host <- sub("^https?://([^/:]+|\\[[^]]+\\]).*$", "\\1", url)
  if (startsWith(url, "http://") && !host %in% c("localhost", "127.0.0.1", "[::1]")) {
    stop("url uses plain http to ", host, ": a key or token would travel unencrypted; use https",
         call. = FALSE)
  }
  if (!is.null(key) && (!is.character(key) || length(key) != 1L)) {
    stop("key must be one string (a function key)", call. = FALSE)
  }
  if (!is.null(key) && !nzchar(key)) key <- NULL
  if (!is.null(token) && !is.function(token) && !(is.character(token) && length(token) == 1L &&
                                                   nzchar(token))) {
    stop("token must be a string or a function returning one (an Entra access token)", call. = FALSE)
  }
  if (is.null(key) && is.null(token)) {
    stop("give a function key (key =, or SCORING_FUNCTION_KEY) or an Entra token (token =)",
         call. = FALSE)
  }
  # The secrets live in a closure: printing or str() of the connection never shows them.
  secrets <- local({
    k <- key
    t <- token
    function() list(key = k, token = if (is.function(t)) t() else t)
  })
  structure(list(url = url, auth = c(if (!is.null(key)) "function key",
                                     if (!is.null(token)) "Entra token"),
                 timeout = timeout, secrets = secrets),
            class = "scoring_connection")
}

print.scoring_connection <- function(x, ...) {
  cat("<scoring service> ", x$url, "\n", sep = "")
  cat("  auth: ", paste(x$auth, collapse = " + "), " (sent as headers)\n", sep = "")
  invisible(x)
}

check_connection <- function(conn) {
  if (!inherits(conn, "scoring_connection")) {
    stop("conn must be a connection from scoring_connect()", call. = FALSE)
  }
  conn
}

# One HTTP exchange. Errors of the service become R errors carrying its message (class scoring_error).
scoring_request <- function(conn, method, path, query = NULL, body = NULL,
                            content_type = "application/json", accept = "application/json") {
  check_connection(conn)
  handle <- curl::new_handle()
  secrets <- conn$secrets()
  headers <- list(Accept = accept, `User-Agent` = "rscoring")
  if (!is.null(secrets$key)) headers[["x-functions-key"]] <- secrets$key
  if (!is.null(secrets$token)) headers[["Authorization"]] <- paste("Bearer", secrets$token)
  if (!is.null(body)) {
    if (is.character(body)) body <- charToRaw(enc2utf8(body))
    headers[["Content-Type"]] <- content_type
    curl::handle_setopt(handle, post = TRUE, postfieldsize = length(body), postfields = body)
  }
  curl::handle_setopt(handle, customrequest = method, timeout = conn$timeout)
  curl::handle_setheaders(handle, .list = headers)
  url <- paste0(conn$url, "/api/", path)
  if (length(query)) {
    url <- paste0(url, "?", paste(names(query), vapply(query, function(v) curl::curl_escape(v),
                                                       character(1)), sep = "=", collapse = "&"))
  }
  response <- curl::curl_fetch_memory(url, handle = handle)
  if (response$status_code >= 400L) {
    stop(service_error(response, method, path))
  }
  response
}

service_error <- function(response, method, path) {
  status <- response$status_code
  text <- rawToChar(response$content)
  parsed <- tryCatch(jsonlite::fromJSON(text, simplifyVector = FALSE), error = function(e) NULL)
  message <- if (is.list(parsed) && !is.null(parsed$error)) {
    parsed$error
  } else if (status == 401L) {
    "the service refused the function key or token"
  } else if (nzchar(text)) {
    substr(text, 1L, 500L)
  } else {
    "no details"
  }
  structure(class = c("scoring_error", "error", "condition"),
            list(message = sprintf("%s (HTTP %d, %s /api/%s)", message, status, method, path),
                 call = NULL, status = status, field = if (is.list(parsed)) parsed$field else NULL))
}

response_json <- function(response, simplify = FALSE) {
  jsonlite::fromJSON(rawToChar(response$content), simplifyVector = simplify)
}

request_json <- function(conn, method, path, body = NULL, query = NULL) {
  if (is.list(body)) body <- jsonlite::toJSON(body, auto_unbox = TRUE, null = "null")
  response_json(scoring_request(conn, method, path, query = query, body = body))
}

path_part <- function(x, what) {
  if (!is.character(x) || length(x) != 1L || !nzchar(x)) {
    stop(what, " must be one non-empty string", call. = FALSE)
  }
  curl::curl_escape(x)
}

"""The blueprint the client routes, their orchestration and its activities register on (function keys)."""

import azure.durable_functions as df
import azure.functions as func

bp = df.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)

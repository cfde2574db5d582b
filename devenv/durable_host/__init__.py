"""Durable Functions dev host: runs a v2-model function app (HTTP, timer, blob, orchestration and activity
triggers) with the real azure-functions-durable SDK, state in SQLite. Development only; the production app
never imports this package.

    python -m devenv.durable_host --app function_app --port 7071 --state-dir .dev/durable
"""

from .host import DevHost, load_settings
from .process import HostProcess, start_host_process

__all__ = ["DevHost", "HostProcess", "load_settings", "start_host_process"]

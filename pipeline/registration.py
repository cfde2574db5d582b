"""The Durable Functions blueprint that the orchestrators and activities register on."""

import azure.durable_functions as df

bp = df.Blueprint()

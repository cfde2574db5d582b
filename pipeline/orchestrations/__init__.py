"""The two durable orchestrators: a run (orchestrations.run) and one shard of it (orchestrations.shard)."""

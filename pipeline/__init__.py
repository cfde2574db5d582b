"""The Functions app's side of a scoring run: plan, fan out one container group per shard, always delete it,
publish. Functions are registered on a blueprint only by pipeline.registration.build_blueprint()."""

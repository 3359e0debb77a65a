"""Experience and demo storage (crash-safe zarr episode store) and replay sampling for the learner.

store.EpisodeStore, replay.ReplayBuffer / MixedReplay, record.record_expert_episodes,
inspect.info / ls / export_episode. See docs/store.md."""

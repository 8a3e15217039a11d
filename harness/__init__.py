"""dqo-bench: the shared backbone (run entry point, stages, models, generation, training, evaluation)."""

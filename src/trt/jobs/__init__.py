"""Generation jobs: the state machine, creation, the engine's workers, delivery."""

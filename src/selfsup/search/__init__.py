"""Loss-weight search with Optuna: the searched space, the study and its workers, trial objectives."""

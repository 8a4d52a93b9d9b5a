"""Students: the trainer, white-box distillation losses, training data by format and metrics by name."""

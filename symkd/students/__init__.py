"""Students: white-box distillation losses and the COMET-ATOMIC2020 automatic evaluation."""

"""Training: EMIDEC and phantom data, augmentation, losses, the loop (needs the [train] extra)."""

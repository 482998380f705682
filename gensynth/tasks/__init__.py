"""What a network is trained for: one module per task's loss, metrics and output decoding."""

"""The training: the trainer (trainer), the progressive schedule (schedule), checkpoints
(checkpoints), the metrics log (metrics_log), divergence checks (divergence), devices and
precision (devices), and data-parallel training under torchrun (distributed)."""

"""rslp fleet: queue-driven batch inference on satellite imagery with rslearn."""

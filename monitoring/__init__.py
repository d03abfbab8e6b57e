"""streamlearn: monitoring package."""

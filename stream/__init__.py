"""streamlearn: stream package."""

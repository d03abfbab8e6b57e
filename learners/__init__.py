"""streamlearn: learners package."""

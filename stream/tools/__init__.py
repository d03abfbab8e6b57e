"""The commands around the daemon: ``streamlearn produce`` and its generators, the demo."""

"""The command line (``modelcanary`` and the kubectl plugin); thin, over kr8s."""

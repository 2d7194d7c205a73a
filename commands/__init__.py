"""The commands of cli.py, a family per module: extraction, training, reading. cli.py puts them in one group."""

"""``python -m qrepeater`` runs the command-line interface."""

from qrepeater.cli import main

main()

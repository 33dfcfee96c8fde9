"""report layer of qrepeater."""

"""hardware layer of qrepeater."""

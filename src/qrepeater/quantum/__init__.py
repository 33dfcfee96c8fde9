"""quantum layer of qrepeater."""

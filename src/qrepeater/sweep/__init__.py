"""sweep layer of qrepeater."""

"""link layer of qrepeater."""

"""diqkd layer of qrepeater."""

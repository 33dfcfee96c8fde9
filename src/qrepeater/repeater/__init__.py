"""repeater layer of qrepeater."""

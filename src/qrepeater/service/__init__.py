"""Networked services (optional extra ``qrepeater[service]``): nodes and the ETSI GS QKD 014 KME."""

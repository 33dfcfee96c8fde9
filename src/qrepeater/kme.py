"""ETSI GS QKD 014 key delivery for Secure Application Entities: ``qr.kme.Client``.

>>> import qrepeater as qr
>>> kme = qr.kme.Client("https://127.0.0.1:8443", cert="sae-a.pem", key="sae-a.key",
...                     ca="ca.pem")                                    # doctest: +SKIP
>>> keys = kme.enc_keys("sae-b", number=4, size=256)                    # doctest: +SKIP

The KME itself (``qrepeater kme serve``) lives in :mod:`qrepeater.service.kme` and needs the
``qrepeater[service]`` extra; :class:`Client` needs only the standard library.
"""

import sys

from qrepeater.service.client import (
    AsyncClient,
    Client,
    Key,
    KMERequestError,
    KMEStatus,
    client_ssl_context,
)

kme = sys.modules[__name__]
"""This module (``qrepeater.kme.kme``): the lazy package table maps ``qr.kme`` through it."""

__all__ = ["AsyncClient", "Client", "KMERequestError", "KMEStatus", "Key", "client_ssl_context"]

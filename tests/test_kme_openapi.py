"""API fuzzing: schemathesis drives a running KME pair from the OpenAPI document shipped with the
package (positive and negative cases, bounded examples) and checks every answer: no 5xx, status
codes and bodies as documented, invalid requests rejected, valid ones accepted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402

from kme_support import InProcessPair, make_pair_files  # noqa: E402
from qrepeater.service.kme import openapi_document  # noqa: E402

MAX_PER_REQUEST = 32

schema = schemathesis.openapi.from_dict(openapi_document(max_key_per_request=MAX_PER_REQUEST))


@pytest.fixture(scope="module")
def kme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessPair, Any]]:
    # enough keys that the fuzzer never empties the store (an empty store is a documented 503,
    # which the "no server error" check would count)
    files = make_pair_files(tmp_path_factory.mktemp("fuzz"), blocks=16, keys_per_block=256)
    with InProcessPair(files, max_key_per_request=MAX_PER_REQUEST) as pair:
        cert, key = files.certs.pair("sae-a1")
        yield pair, {"cert": (str(cert), str(key)), "verify": str(files.certs.ca)}


@pytest.mark.timeout(600)
@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_kme_conforms_to_its_openapi_document(case: Any, kme: tuple[InProcessPair, Any]) -> None:
    pair, tls = kme
    case.call_and_validate(base_url=pair.url("a"), **tls)

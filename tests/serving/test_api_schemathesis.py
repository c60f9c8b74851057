"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis).

Valid and invalid requests are generated for every operation, sent with a key holding every
scope, and no answer may be a 5xx: anything a client can send is answered with 2xx or 4xx.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from api_fixtures import served, trained_store
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

#: Generated cases per operation and mode; 12 operations x 2 modes x 25 = 600 at least.
EXAMPLES = 25


@pytest.mark.slow
def test_no_5xx_for_generated_requests(tmp_path: Path) -> None:
    store = trained_store(tmp_path / "shop")
    with served(store, rate_limit=0, max_body_bytes=65_536) as srv:
        schema = schemathesis.openapi.from_asgi("/openapi.json", srv.app)
        counts: Counter[str] = Counter()
        failures: list[str] = []
        auth = {"X-API-Key": srv.keys["all"]}
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    database=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(generation_mode=mode))
                def run(case: schemathesis.Case) -> None:
                    response = case.call(headers=auth)
                    label = case.operation.label
                    counts[label] += 1
                    if response.status_code >= 500:
                        failures.append(f"{label} -> {response.status_code}: {response.text[:200]}")

                try:
                    run()
                except Unsatisfiable:
                    # nothing to make invalid: an operation without parameters or body
                    assert mode is GenerationMode.NEGATIVE, operation.label
        assert not failures, "\n".join(failures[:20])
        assert sum(counts.values()) >= 500, counts
        assert len(counts) >= 12
    shutil.rmtree(store, ignore_errors=True)

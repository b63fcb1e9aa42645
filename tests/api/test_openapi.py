"""The OpenAPI document tells the truth: typed job bodies, every error answer, docs/api.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.api import apidoc
from shared.events import JOB_TYPES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return apidoc.openapi_document()


def _ref(schema: dict[str, Any]) -> str:
    return str(schema["$ref"]).rsplit("/", 1)[1]


def test_post_jobs_lists_every_job_type_with_its_options(document: dict[str, Any]) -> None:
    body = document["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schemas = document["components"]["schemas"]
    bodies = [schemas[_ref(s)] for s in body["oneOf"]]
    assert sorted(b["properties"]["type"]["const"] for b in bodies) == sorted(JOB_TYPES)
    restore = next(b for b in bodies if b["properties"]["type"]["const"] == "restore")
    assert {"repository_id", "archive", "options", "type"} <= set(restore["required"])
    options = schemas[_ref(restore["properties"]["options"])]
    assert "destination" in options["required"]


def test_every_error_answer_is_documented_with_the_body_it_has(document: dict[str, Any]) -> None:
    own_bodies = {
        ("/api/health", "get", "503"): "Health",
        ("/api/notifications/{notification_id}/test", "post", "502"): "SendResult",
    }
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            answers = op["responses"]
            if path != "/api/health":
                assert {"401", "403", "503"} <= set(answers), f"{method} {path}"
            if "{" in path:
                assert "404" in answers, f"{method} {path}"
            if "requestBody" in op:
                assert {"400", "413", "422"} <= set(answers), f"{method} {path}"
            for status, answer in answers.items():
                if status.startswith("2"):
                    continue
                schema = answer["content"]["application/json"]["schema"]
                want = own_bodies.get((path, method, status), "ErrorBody")
                assert _ref(schema) == want, f"{method} {path} {status}"


def test_refusals_by_the_rules_are_documented_as_409(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert "409" in paths["/api/jobs"]["post"]["responses"]
    assert "409" in paths["/api/jobs/{job_id}/cancel"]["post"]["responses"]
    assert "409" in paths["/api/repositories/{repo_id}"]["delete"]["responses"]
    assert "409" in paths["/api/tokens/{token_id}"]["delete"]["responses"]
    assert "409" not in paths["/api/jobs"]["get"]["responses"]


def test_docs_api_md_is_the_schema_written_out(document: dict[str, Any]) -> None:
    assert DOCS.read_text() == apidoc.render(document), (
        "docs/api.md differs from the api: write it again with `.venv/bin/python -m services.api.apidoc > docs/api.md`"
    )

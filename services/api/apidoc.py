"""docs/api.md, written from the OpenAPI document the api serves at /schema.

    borgflow-python -m services.api.apidoc > docs/api.md

A test renders it again and compares, so the page cannot drift from the api. It needs
no running system: the document is built from the route handlers and their types.
"""

from __future__ import annotations

import json
import sys
from typing import Any

INTRO = """\
# borgflow HTTP API

Written from the OpenAPI document the api serves at `/schema/openapi.json` (a browsable
version at `/schema`); `python -m services.api.apidoc > docs/api.md` writes it again.

Every endpoint but `GET /api/health` needs `Authorization: Bearer TOKEN` (websockets may
pass `?token=`). Errors are JSON: `{"detail": "what went wrong, in words", "field": "the
request field it is about, when there is one"}`. Bad input is 400 or 422 and names the
field; 503 means Postgres or NATS is away for a moment (retry after `Retry-After`).
Lists answer `{"items": [...]}`; job lists add `next_cursor`. Times are ISO 8601 UTC.

Websockets (not in OpenAPI): `WS /api/events?job_id=&type=` streams event envelopes
(job progress included) as they happen; `WS /api/jobs/{id}/log/follow` streams a job's
log lines from the start.
"""


def _type(schema: dict[str, Any]) -> str:
    """A schema in a few words: `string`, `Job`, `array of Job`, `integer or null`."""
    if "$ref" in schema:
        return "`" + str(schema["$ref"]).rsplit("/", 1)[1] + "`"
    if "oneOf" in schema or "anyOf" in schema:
        return " or ".join(_type(s) for s in schema.get("oneOf", schema.get("anyOf", [])))
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " | ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind)
    if kind == "array":
        return "array of " + _type(schema.get("items", {}))
    return str(kind)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    out = [f"### {method.upper()} {path}", ""]
    if op.get("description"):
        out += [str(op["description"]).strip(), ""]
    params = op.get("parameters", [])
    if params:
        out += ["| parameter | in | type | required |", "|---|---|---|---|"]
        for p in params:
            required = "yes" if p.get("required") else ""
            out.append(f"| `{p['name']}` | {p['in']} | {_cell(_type(p.get('schema', {})))} | {required} |")
        out.append("")
    body = op.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        out += [f"Body ({media}): {_type(content.get('schema', {}))}", ""]
    out += ["| status | means | body |", "|---|---|---|"]
    for status, answer in sorted(op.get("responses", {}).items()):
        content = answer.get("content") or {}
        kinds = ", ".join(_type(c.get("schema", {})) for c in content.values()) or "none"
        out.append(f"| {status} | {_cell(str(answer.get('description', '')))} | {_cell(kinds)} |")
    out.append("")
    return out


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    out = [f"### {name}", ""]
    if schema.get("description"):
        out += [_cell(str(schema["description"])), ""]
    props = schema.get("properties")
    if not props:
        out += [f"{_type(schema)}", ""]
        return out
    required = set(schema.get("required", []))
    out += ["| field | type | required | default | about |", "|---|---|---|---|---|"]
    for field, sub in props.items():
        default = f"`{json.dumps(sub['default'])}`" if "default" in sub else ""
        about = _cell(str(sub.get("description", "")))
        out.append(f"| `{field}` | {_cell(_type(sub))} | {'yes' if field in required else ''} | {default} | {about} |")
    out.append("")
    return out


def render(document: dict[str, Any]) -> str:
    lines = [INTRO, "## Operations", ""]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, ops in document.get("paths", {}).items():
        for method, op in ops.items():
            by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
    for tag in sorted(by_tag):
        lines += [f"## {tag}", ""]
        for method, path, op in by_tag[tag]:
            lines += _operation(method, path, op)
    lines += ["## Bodies", ""]
    for name, schema in sorted(document.get("components", {}).get("schemas", {}).items()):
        lines += _schema(name, schema)
    return "\n".join(lines).rstrip() + "\n"


def openapi_document() -> dict[str, Any]:
    """The api's OpenAPI document, built from its handlers (no system needs to run)."""
    from services.api.app import create_app
    from shared.config import Settings

    schema: dict[str, Any] = create_app(Settings()).openapi_schema.to_schema()
    return schema


if __name__ == "__main__":
    sys.stdout.write(render(openapi_document()))

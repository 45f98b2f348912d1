"""GET /api/openapi.json is true to the code: a valid OpenAPI 3.1 document with exactly the
routes of the application's router, which the answers of a live `vpo serve` over really
processed media conform to, status and body; and schemathesis, generating requests from
the served document, finds no 500 and no answer outside it (docs/cli.md, `vpo serve`)."""

import http.client
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import vpo
from tests.helpers import database_with_files
from tests.integration.test_server_api import (
    PURGE,
    TOKEN,
    Server,
    bearer,
    guarded,  # noqa: F401 - a fixture: a server with VPO_API_TOKEN over a throwaway database
    processed,  # noqa: F401 - a fixture: sample media processed by two policies
    start_server,
    synthetic,  # noqa: F401 - a fixture: two runs whose ids share a prefix
)
from vpo.db.connection import open_database
from vpo.server import make_app, openapi

DOCUMENT = "/api/openapi.json"
LAST_RUN = "/v1/files/{file_id}/last-run"
EXAMPLES_PER_OPERATION = 40
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
OPERATIONS = sorted(
    (method.upper(), path) for path, item in openapi.build()["paths"].items() for method in item
)


@pytest.fixture(scope="module")
def served(processed: Path) -> Iterator[Server]:  # noqa: F811
    """`vpo serve` without VPO_API_TOKEN (so the purge can only refuse) over the media."""
    server = start_server(processed, processed.parent)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def document(served: Server) -> dict[str, Any]:
    status, data, body = served.get(DOCUMENT)
    assert status == 200, body
    return data


# -- the document ----------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1_and_built_from_the_code(
    document: dict[str, Any],
) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["info"]["version"] == vpo.__version__
    assert document == openapi.build()
    purge = document["paths"][PURGE]["delete"]
    assert purge["security"] == [{"bearerAuth": []}]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_the_document_has_exactly_the_routes_of_the_router(tmp_path: Path) -> None:
    """A route added without documentation, or documentation without a route, fails."""
    app = make_app(database_with_files(tmp_path / "vpo.db"))
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {
        (method.upper(), path) for path, item in openapi.build()["paths"].items() for method in item
    }
    assert routes == documented
    assert ("GET", DOCUMENT) in routes


# -- live answers conform ------------------------------------------------------------------------


class Conformance:
    """Checks answers against the document: the status is documented for the operation,
    the content type too, and a JSON body validates against the documented schema."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.seen: set[tuple[str, str, int]] = set()

    def check(
        self,
        server: Server,
        method: str,
        template: str,
        path: str,
        headers: dict[str, str] | None = None,
    ) -> Any:
        status, data, body, answer_headers = server.request(path, method, headers)
        responses = self.document["paths"][template][method.lower()]["responses"]
        assert str(status) in responses, (method, path, status, body)
        content_type = answer_headers["Content-Type"].split(";")[0].strip()
        content = responses[str(status)]["content"]
        assert content_type in content, (method, path, content_type)
        if content_type == "application/json":
            schema = {**content[content_type]["schema"], "components": self.document["components"]}
            errors = sorted(Draft202012Validator(schema).iter_errors(data), key=str)
            assert not errors, (method, path, [e.message for e in errors[:5]])
        self.seen.add((method, template, status))
        return data


@pytest.fixture(scope="module")
def conformance(document: dict[str, Any]) -> Conformance:
    return Conformance(document)


def test_answers_of_a_live_server_conform(served: Server, conformance: Conformance) -> None:
    check = conformance.check
    check(served, "GET", "/api/stats/summary", "/api/stats/summary")
    window = check(
        served, "GET", "/api/stats/summary", "/api/stats/summary?since=2026-01-01&until=2099-12-31"
    )
    assert window["rolling"] is None
    check(served, "GET", "/api/stats/summary", "/api/stats/summary?since=yesterday")
    listed = check(served, "GET", "/api/stats/policies", "/api/stats/policies")
    check(
        served, "GET", "/api/stats/policies", "/api/stats/policies?sort=total_size_saved&order=asc"
    )
    for row in listed["policies"]:
        name = urllib.parse.quote(row["policy_name"], safe="")
        check(served, "GET", "/api/stats/policies/{name}", f"/api/stats/policies/{name}")
    check(served, "GET", "/api/stats/policies/{name}", "/api/stats/policies/no-such-policy")
    files = "/api/stats/files/{file_id}"
    check(served, "GET", files, "/api/stats/files/1")
    check(served, "GET", files, "/api/stats/files/2?limit=1")
    check(served, "GET", files, "/api/stats/files/9999")
    check(served, "GET", files, "/api/stats/files/1?limit=101")
    recent = check(served, "GET", "/api/stats/recent", "/api/stats/recent?limit=100")
    check(served, "GET", "/api/stats/recent", "/api/stats/recent?success_only=true")
    for bucket in ("day", "week", "month"):
        check(served, "GET", "/api/stats/trends", f"/api/stats/trends?bucket={bucket}")
    workers = check(served, "GET", "/api/stats/workers", "/api/stats/workers")
    check(served, "GET", "/api/stats/workers", "/api/stats/workers?since=2099-01-01")
    for row in workers["workers"]:  # a local run's worker is this host
        name = urllib.parse.quote(row["worker"], safe="")
        check(served, "GET", "/api/stats/summary", f"/api/stats/summary?worker={name}")
    detail = "/api/stats/{stats_id}"
    states = 0
    for run in recent["items"]:
        answer = check(served, "GET", detail, f"/api/stats/{run['stats_id']}")
        states += sum(a["before_state"] is not None for a in answer["action_results"])
        check(served, "GET", detail, f"/api/stats/{run['stats_id'][:8]}")
    assert states, "some run's actions carry states, so their override is checked"
    check(served, "GET", detail, "/api/stats/00000000-0000-4000-8000-000000000000")
    check(served, "GET", detail, "/api/stats/not-a-run-id")
    check(served, "GET", detail, PURGE)  # the purge's path asked with GET: 405
    check(served, "GET", "/api/library/composition", "/api/library/composition")
    check(served, "GET", "/healthz", "/healthz")
    check(served, "GET", "/metrics", "/metrics")
    check(served, "GET", "/metrics", "/metrics", headers={"Accept": "application/openmetrics-text"})
    check(served, "GET", DOCUMENT, DOCUMENT)
    files = "/api/library/files"
    found = check(served, "GET", files, files + "?path=MKV&limit=3")
    assert len(found["files"]) == 3
    check(served, "GET", files, files + "?path=")  # 400
    check(served, "GET", "/stats", "/stats?range=7d")
    check(served, "GET", "/static/{name}", "/static/dashboard.js")
    check(served, "GET", "/static/{name}", "/static/vendor/chart.umd.min.js")
    check(served, "GET", "/static/{name}", "/static/no-such.js")  # 404
    redirect = http.client.HTTPConnection(urllib.parse.urlsplit(served.url).netloc, timeout=10)
    try:  # urllib would follow it
        redirect.request("GET", "/")
        answer = redirect.getresponse()
        documented = conformance.document["paths"]["/"]["get"]["responses"]
        assert answer.status == 302 and str(answer.status) in documented
        assert answer.getheader("Location") == "/stats"
    finally:
        redirect.close()
    check(served, "GET", "/api/stats/recent", "/api/stats/recent?x=" + "a" * 5000)  # 414
    check(served, "DELETE", PURGE, PURGE + "?policy=x")  # no token configured: 403
    check(served, "POST", "/v1/traces", "/v1/traces")  # no VPO_WORKER_TOKEN configured: 403
    check(served, "GET", LAST_RUN, "/v1/files/1/last-run")  # the same 403
    answered = {
        (method, template) for method, template, status in conformance.seen if status == 200
    }
    # "/" answers 302, checked above; POST /v1/traces: tests/integration/test_otlp_ingest.py;
    # GET LAST_RUN with the worker token: the test below
    unasked = {("DELETE", PURGE), ("POST", "/v1/traces"), ("GET", "/"), ("GET", LAST_RUN)}
    assert set(OPERATIONS) - unasked <= answered, "every other GET answers 200 here"


def test_the_purge_and_its_refusals_conform(guarded: Server, conformance: Conformance) -> None:  # noqa: F811
    for headers, status in ((None, 401), (bearer("wrong"), 401), (bearer(TOKEN), 400)):
        conformance.check(guarded, "DELETE", PURGE, PURGE, headers=headers)
        assert ("DELETE", PURGE, status) in conformance.seen
    answer = conformance.check(
        guarded, "DELETE", PURGE, PURGE + "?policy=cleanup", headers=bearer(TOKEN)
    )
    assert answer["deleted_count"] == 4


def test_a_files_last_run_and_its_refusals_conform(
    processed: Path,  # noqa: F811
    conformance: Conformance,
    tmp_path: Path,
) -> None:
    """For workers, with their token: the newest recorded run of a file and what it left;
    null for a file without runs; 404, 400 and 401 in words."""
    db = tmp_path / "vpo.db"
    db.write_bytes(processed.read_bytes())
    conn = open_database(db)
    try:
        newest = conn.execute(
            "SELECT id, file_id, size_after, hash_after, success FROM processing_stats "
            "ORDER BY processed_at DESC LIMIT 1"
        ).fetchone()
        unrun = conn.execute(
            "INSERT INTO files (path, size_bytes, mtime, scanned_at) "
            "VALUES ('/elsewhere/new.mkv', 1, 1, 'x') RETURNING id"
        ).fetchone()[0]
        conn.commit()
    finally:
        conn.close()
    server = start_server(db, tmp_path, env={"VPO_WORKER_TOKEN": "worker-secret"})
    worker = bearer("worker-secret")
    try:
        check = conformance.check
        answer = check(server, "GET", LAST_RUN, f"/v1/files/{newest[1]}/last-run", worker)
        assert answer == {
            "file_id": newest[1],
            "last_run": {
                "stats_id": newest[0],
                "state": "recorded",
                "success": bool(newest[4]),
                "worker": os.uname().nodename,
                "size": newest[2],
                "partial_hash": newest[3],
            },
        }
        assert check(server, "GET", LAST_RUN, f"/v1/files/{unrun}/last-run", worker) == {
            "file_id": unrun,
            "last_run": None,
        }
        for path, status, headers in (
            ("/v1/files/99999/last-run", 404, worker),
            ("/v1/files/abc/last-run", 400, worker),
            ("/v1/files/0/last-run", 400, worker),
            (f"/v1/files/{'9' * 5000}/last-run", 400, worker),  # past int()'s digit limit
            ("/v1/files/%D9%A1/last-run", 400, worker),  # an Arabic-Indic one is no file id
            ("/v1/files/1/last-run", 401, bearer("wrong")),
            ("/v1/files/1/last-run", 401, None),
        ):
            check(server, "GET", LAST_RUN, path, headers)
            assert ("GET", LAST_RUN, status) in conformance.seen, path
    finally:
        server.stop()


def test_the_documented_defaults_are_the_servers(guarded: Server) -> None:  # noqa: F811
    """Leaving a parameter out answers as its documented default does (12 runs here)."""
    paths = openapi.build()["paths"]

    def default(path: str, name: str) -> Any:
        (param,) = [p for p in paths[path]["get"]["parameters"] if p["name"] == name]
        return param["schema"]["default"]

    recent = guarded.get("/api/stats/recent")[1]["items"]
    assert len(recent) == default("/api/stats/recent", "limit") < 12
    for path, name in (
        ("/api/stats/policies", "sort"),
        ("/api/stats/trends", "bucket"),
        ("/api/stats/recent", "success_only"),
    ):
        value = str(default(path, name)).lower()
        assert guarded.get(f"{path}?{name}={value}")[1] == guarded.get(path)[1], (path, name)


def test_ambiguity_and_an_unreadable_database_conform(
    synthetic: Server,  # noqa: F811
    conformance: Conformance,
) -> None:
    answer = conformance.check(synthetic, "GET", "/api/stats/{stats_id}", "/api/stats/abcdef12")
    assert len(answer["candidates"]) == 2
    saved = synthetic.db.read_bytes()
    synthetic.db.write_bytes(b"not a database" * 100)
    try:
        health = conformance.check(synthetic, "GET", "/healthz", "/healthz")
        assert health["db"] == "unreadable"
        conformance.check(synthetic, "GET", "/api/stats/summary", "/api/stats/summary")
    finally:
        synthetic.db.write_bytes(saved)
    assert {("GET", "/api/stats/{stats_id}", 409), ("GET", "/healthz", 503)} <= conformance.seen
    assert ("GET", "/api/stats/summary", 503) in conformance.seen


# -- schemathesis against the served document ------------------------------------------------


def _fuzz(server: Server, method: str, path: str, headers: dict[str, str] | None = None) -> None:
    """Requests generated from the served document for one operation, valid and invalid
    ones, each answered without a 5xx and as the document says."""
    schema = schemathesis.openapi.from_url(server.url + DOCUMENT)
    operation = schema[path][method]
    session = requests.Session()
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: schemathesis.Case) -> None:
        response = case.call(base_url=server.url, session=session, headers=headers, timeout=10)
        case.validate_response(response, checks=CHECKS, headers=headers)

    try:
        conforms()
    finally:
        session.close()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_schemathesis_finds_no_error_and_no_answer_outside_the_document(
    served: Server, method: str, path: str
) -> None:
    """The purge here has no token configured: every request is refused, nothing deleted."""
    _fuzz(served, method, path)


def test_schemathesis_purges_a_throwaway_database_with_the_token(guarded: Server) -> None:  # noqa: F811
    _fuzz(guarded, "DELETE", PURGE, headers=bearer(TOKEN))

"""Fuzz every operation of the server's OpenAPI document with schemathesis.

Schemathesis reads ``/openapi.json`` from the app in-process, makes requests from each
operation's schemas (valid and invalid ones: empty strings, huge numbers, odd Unicode,
wrong types) and checks every answer: never a server error, and the body matches the
documented schema of its status code.

The project has data behind every route: labelled and unlabelled images, embeddings, a
released probe, stored predictions and a clustering. Half the time a case is steered at
that data (a known image id, round or model alias, a real image file of odd size and
mode in place of the fuzzer's text), so requests reach the decoders, the model and the
catalog's rows, not only the 404s and 422s in front of them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from conftest import write_png
from lensloop.project import Project
from lensloop.service import create_app
from lensloop.service.fetch import FetchPolicy
from lensloop.settings import Settings
from lsfakes import release_coloured

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    from lensloop.embed.explore import cluster_images
    from lensloop.train.inference import init_model, predict_project

    root = tmp_path_factory.mktemp("fuzz")
    with Project.init(root / "project", settings=Settings(cache_dir=root / "cache")) as project:
        for index in range(6):
            write_png(root / "pool" / f"{index}.png", seed=100 + index)
        release_coloured(project, root, unlabelled=root / "pool")
        predict_project(project, init_model(None, project=project, task="classify"))
        cluster_images(project, backbone="features", k=3)
        yield project


@pytest.fixture(scope="module")
def api_schema(fuzzed_project: Project) -> schemathesis.BaseSchema:
    # A short URL deadline: generated URLs that resolve must not hold a case for 10 s.
    app = create_app(fuzzed_project, retrain=False, fetch_policy=FetchPolicy(timeout_s=2.0))
    served = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema = schemathesis.openapi.from_dict(plain_optional_files(served.raw_schema))
    schema.app = app
    return schema


def plain_optional_files(document: Any) -> Any:
    """``document`` with each optional upload written as a plain binary string.

    FastAPI documents ``UploadFile | None`` as ``anyOf: [binary string, null]``, and
    schemathesis sends such a field as a text part, never as a file, so the fuzzer's
    uploads would stop at "Expected UploadFile" instead of reaching the decoders. A
    multipart part cannot be null anyway: leaving the field out is how it is omitted.
    """
    if isinstance(document, list):
        return [plain_optional_files(item) for item in document]
    if not isinstance(document, dict):
        return document
    options = document.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        [other] = [option for option in options if option != {"type": "null"}]
        if other.get("contentMediaType") == "application/octet-stream":
            rest = {key: value for key, value in document.items() if key != "anyOf"}
            return {**other, **rest}
    return {key: plain_optional_files(value) for key, value in document.items()}


#: Every operation of the app's OpenAPI document (test_every_operation_is_fuzzed keeps this
#: list complete: a new route fails it until it is added here).
OPERATIONS = [
    ("GET", "/health"),
    ("POST", "/setup"),
    ("POST", "/predict"),
    ("POST", "/webhook"),
    ("GET", "/metrics"),
    ("GET", "/images/{image_id}"),
    ("GET", "/v1/session"),
    ("POST", "/v1/session"),
    ("DELETE", "/v1/session"),
    ("GET", "/v1/project"),
    ("GET", "/v1/classes"),
    ("GET", "/v1/images"),
    ("POST", "/v1/images"),
    ("GET", "/v1/images/{image_id}"),
    ("GET", "/v1/images/{image_id}/file"),
    ("GET", "/v1/images/{image_id}/thumbnail"),
    ("POST", "/v1/labels"),
    ("GET", "/v1/map"),
    ("GET", "/v1/clusters"),
    ("POST", "/v1/clusters"),
    ("GET", "/v1/similar"),
    ("POST", "/v1/similar"),
    ("POST", "/v1/embed"),
    ("POST", "/v1/predict"),
    ("POST", "/v1/select"),
    ("GET", "/v1/rounds"),
    ("GET", "/v1/rounds/{round_id}"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{ref}"),
    ("GET", "/v1/models/{ref}/predictions"),
]


#: Values that reach rows of the fixture's project, drawn for a parameter of that name half
#: the time: the fuzzer alone would rarely guess a model alias or a stored round's id.
KNOWN = {
    "image_id": st.integers(min_value=1, max_value=30),
    "round_id": st.integers(min_value=1, max_value=3),
    "ref": st.sampled_from(["1", "latest", "champion"]),
    "model": st.sampled_from([None, "1", "latest"]),
    "backbone": st.sampled_from([None, "features"]),
    "n": st.integers(min_value=1, max_value=3),
}
#: Operations whose multipart ``file`` field is a list.
MANY_FILES = {"/v1/images"}
#: The checks every answer must pass.
CHECKS = [not_a_server_error, response_schema_conformance]


@st.composite
def image_files(draw: st.DrawFn) -> bytes:
    """A real image file of odd size, mode and format (the fuzzer's own files are text)."""
    width = draw(st.integers(min_value=1, max_value=40))
    height = draw(st.integers(min_value=1, max_value=40))
    # (channels, dtype): grey, RGB, RGBA, 16-bit grey.
    channels, dtype = draw(
        st.sampled_from([(0, np.uint8), (3, np.uint8), (4, np.uint8), (0, np.uint16)])
    )
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**16)))
    shape = (height, width, channels) if channels else (height, width)
    pixels = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format=draw(st.sampled_from(["PNG", "TIFF"])))
    return buffer.getvalue()


def steer(case: Case, data: st.DataObject) -> None:
    """Point some of a generated case at the project's data: known ids, real images."""
    for params in (case.path_parameters, case.query, case.body):
        if not isinstance(params, dict):
            continue
        for name, known in KNOWN.items():
            if name in params and data.draw(st.booleans(), label=f"known {name}"):
                params[name] = data.draw(known, label=name)
    if case.media_type == "multipart/form-data" and data.draw(st.booleans(), label="real file"):
        body = dict(case.body) if isinstance(case.body, dict) else {}
        body.pop("url", None)  # a file or a URL, not both
        if case.path in MANY_FILES:
            body["file"] = data.draw(st.lists(image_files(), min_size=1, max_size=3), label="files")
        else:
            body["file"] = data.draw(image_files(), label="file")
        case.body = body


def test_every_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    documented = {
        (result.ok().method.upper(), result.ok().path) for result in api_schema.get_all_operations()
    }
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_api_never_fails_and_answers_as_documented(
    api_schema: schemathesis.BaseSchema, method: str, path: str, data: st.DataObject
) -> None:
    operation = api_schema[path][method]
    case = data.draw(
        st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        ),
        label="case",
    )
    steer(case, data)
    case.call_and_validate(checks=CHECKS)

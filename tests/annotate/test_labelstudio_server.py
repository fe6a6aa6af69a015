"""The throw-away Label Studio server the annotation integration tests run against.

``ls_server`` is the session fixture in ``tests/conftest.py`` that wraps
:func:`servers.labelstudio_server`; label-studio-sdk is the client, as in lensloop.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from conftest import write_png
from servers import LOOPBACK, LabelStudioServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LABEL_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Choices name="class" toName="image">
    <Choice value="diatom"/>
    <Choice value="copepod"/>
  </Choices>
</View>"""


# label-studio-sdk 2.1.2 still uses pydantic v1 idioms and warns five times when first
# imported (label_studio_sdk._legacy.client, label_interface.control_tags and .objects), so
# it is imported inside the test, under this filter.
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20:label_studio_sdk")
def test_project_task_and_local_file_round_trip(ls_server: LabelStudioServer) -> None:
    from label_studio_sdk import LabelStudio

    assert urlsplit(ls_server.url).hostname == LOOPBACK
    folder = ls_server.files_root / "round-trip"
    image = write_png(folder / "diatom 1.png", seed=1)
    image_url = ls_server.local_files_url(image)
    assert image_url == f"{ls_server.url}/data/local-files/?d=round-trip/diatom%201.png"

    # Our own client, closed on exit: the SDK's default one leaks a socket (ResourceWarning).
    with httpx.Client(timeout=60) as http:
        ls = LabelStudio(base_url=ls_server.url, api_key=ls_server.token, httpx_client=http)
        project = ls.projects.create(title="round trip", label_config=LABEL_CONFIG)
        assert project.id is not None
        # Label Studio serves a local file only below a local-files storage's path.
        ls.import_storage.local.create(project=project.id, path=str(folder), title="images")
        imported = ls.projects.import_tasks(
            project.id,
            request=[{"data": {"image": image_url, "image_id": 7}}],
            return_task_ids=True,
        )
        assert imported.task_count == 1
        # task_ids is not a declared field of the SDK's response model, but it is kept.
        assert imported.task_ids is not None
        (task_id,) = imported.task_ids

        task = ls.tasks.get(task_id)
        assert task.data == {"image": image_url, "image_id": 7}
        assert task.project == project.id
        assert [listed.id for listed in ls.tasks.list(project=project.id)] == [task_id]

        served = http.get(image_url, headers=ls_server.headers)
        assert served.status_code == 200
        assert served.content == image.read_bytes()
        assert http.get(image_url).status_code == 401  # only with the token

"""The fake Vertex server speaks the real wire format: the official google-cloud-aiplatform REST
client drives it, and its list filter and paging follow the reference."""

from __future__ import annotations

import pytest

from runner.devtools.fakevertex.filters import FilterError, compile_filter

JOB = {"displayName": "my_job_1", "state": "JOB_STATE_RUNNING", "createTime": "2026-01-02T00:00:00Z",
       "labels": {"batchrun-managed": "v1", "team": "x"}}


@pytest.mark.parametrize(("text", "expected"), [
    ('labels.batchrun-managed="v1"', True),
    ('state="JOB_STATE_SUCCEEDED" AND display_name:"my_job_*"', False),
    ('state!="JOB_STATE_FAILED" OR display_name="my_job"', True),
    ('NOT display_name="my_job"', True),
    ('-labels.team=x', False),
    ('create_time>"2021-05-18T00:00:00Z"', True),
    ("labels.keyB:*", False),
    ("labels.team:*", True),
    ('(state="JOB_STATE_RUNNING" OR state="X") AND labels.team=x', True),
    ('state="JOB_STATE_RUNNING" OR state="X" AND labels.team=y', False),  # OR binds tighter
])
def test_filter_grammar(text: str, expected: bool) -> None:
    assert compile_filter(text)(JOB) is expected


def test_unsupported_filter_field_is_an_error() -> None:
    with pytest.raises(FilterError, match="unsupported filter field"):
        compile_filter('owner="me"')


def test_official_rest_client_against_the_fake(emulator_env: dict[str, str]) -> None:
    import requests
    from google.api_core.exceptions import BadRequest, NotFound
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1

    base = emulator_env["BATCHRUN_VERTEX_ENDPOINT"]
    requests.post(f"{base}/_fake/reset", timeout=10).raise_for_status()
    requests.post(f"{base}/_fake/faults", json={"pending_seconds": 60, "page_size_max": 2},
                  timeout=10).raise_for_status()
    client = aiplatform_v1.JobServiceClient(transport="rest", credentials=AnonymousCredentials(),
                                            client_options={"api_endpoint": base})
    parent = "projects/p/locations/us-central1"
    names = []
    for i in range(3):
        job = client.create_batch_prediction_job(parent=parent, batch_prediction_job={
            "display_name": f"bp-{i}", "model": "publishers/meta/models/llama-4-maverick-17b-128e-instruct-maas",
            "input_config": {"instances_format": "jsonl",
                             "gcs_source": {"uris": ["gs://b/in.jsonl"]}},
            "output_config": {"predictions_format": "jsonl",
                              "gcs_destination": {"output_uri_prefix": "gs://b/out/"}},
            "labels": {"team": "x" if i else "y"}})
        assert job.state == aiplatform_v1.JobState.JOB_STATE_PENDING
        names.append(job.name)
    assert client.get_batch_prediction_job(name=names[0]).display_name == "bp-0"
    listed = list(client.list_batch_prediction_jobs(request={
        "parent": parent, "filter": "labels.team=x", "page_size": 2}))
    assert sorted(j.display_name for j in listed) == ["bp-1", "bp-2"]
    assert len(list(client.list_batch_prediction_jobs(parent=parent))) == 3  # across 2 pages
    client.cancel_batch_prediction_job(name=names[0])
    with pytest.raises(BadRequest):
        client.delete_batch_prediction_job(name=names[1])  # still pending
    for _ in range(100):
        if client.get_batch_prediction_job(name=names[0]).state == \
                aiplatform_v1.JobState.JOB_STATE_CANCELLED:
            break
        __import__("time").sleep(0.05)
    operation = client.delete_batch_prediction_job(name=names[0])
    operation.result(timeout=10)
    with pytest.raises(NotFound):
        client.get_batch_prediction_job(name=names[0])

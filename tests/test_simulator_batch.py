"""The simulator's Batch and Files APIs, driven by the unmodified google-genai SDK (sync and async).

Jobs advance on an injected clock (`Clock`), so no test sleeps: moving the clock moves a job
from PENDING through RUNNING to its end. Raw GETs show what the SDK drops (``batchStats``,
the top-level ``error``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import anyio
import pydantic
import pytest
from google import genai
from google.genai import errors, types
from PIL import Image
from test_simulator import instruction, make_png

from imagelingo_cli.simulator import BatchScript, JobRule, Scenario, Simulator

MODEL = "gemini-2.5-flash-image"
KEY = "test-key"


class Clock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def simulator(clock: Clock, **kwargs: Any) -> Simulator:
    """A simulator on `clock`: jobs pending 10 s, then running 20 s, unless told otherwise."""
    kwargs.setdefault("batch_pending", 10)
    kwargs.setdefault("batch_running", 20)
    return Simulator(kwargs.pop("profile", "ok"), clock=clock, **kwargs)


def sdk(base_url: str, api_version: str | None = "v1beta") -> genai.Client:
    """The real google-genai client aimed at the simulator (its own retries off, as ours are)."""
    return genai.Client(
        api_key=KEY, http_options=types.HttpOptions(base_url=base_url, api_version=api_version)
    )


def request_line(image: bytes, variation: int = 1, tag: str = "es", name: str = "Spanish") -> Any:
    """A GenerateContentRequest as our JSONL carries it (snake_case inline data, URL-safe b64)."""
    return {
        "contents": [
            {
                "parts": [
                    {
                        "inline_data": {
                            "mime_type": "image/png",
                            "data": base64.urlsafe_b64encode(image).decode("ascii"),
                        }
                    },
                    {"text": instruction(tag, name, variation)},
                ],
                "role": "user",
            }
        ],
        "generation_config": {"responseModalities": ["IMAGE"]},
    }


def write_jsonl(path: Path, lines: list[tuple[str, Any]]) -> Path:
    with path.open("w") as sink:
        for key, request in lines:
            sink.write(json.dumps({"key": key, "request": request}) + "\n")
    return path


def upload(client: genai.Client, path: Path) -> types.File:
    return client.files.upload(
        file=path, config=types.UploadFileConfig(mime_type="application/jsonl")
    )


def finished_job(client: genai.Client, clock: Clock, path: Path) -> types.BatchJob:
    """Upload `path`, create a job from it, move the clock past its end, and get the job."""
    job = client.batches.create(model=MODEL, src=upload(client, path).name or "")
    clock.advance(30)
    return client.batches.get(name=job.name or "")


def results(client: genai.Client, job: types.BatchJob) -> dict[str, dict[str, Any]]:
    """The job's responses file, downloaded, by key."""
    assert job.dest is not None and job.dest.file_name is not None
    return lines_of(client.files.download(file=job.dest.file_name))


def raw(base_url: str, path: str, method: str = "GET", key: str | None = KEY) -> tuple[int, Any]:
    """A raw call, as a client reading what the SDK drops would make it."""
    request = urllib.request.Request(f"{base_url}/v1beta/{path}", method=method)
    if key is not None:
        request.add_header("x-goog-api-key", key)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def lines_of(data: bytes) -> dict[str, dict[str, Any]]:
    """A responses file, by key."""
    lines = [json.loads(line) for line in data.splitlines() if line.strip()]
    return {line["key"]: line for line in lines}


def image_of(response: dict[str, Any]) -> Image.Image:
    """The image of a line's response, parsed back through the SDK's own types."""
    parsed = types.GenerateContentResponse._from_response(response=response, kwargs={})
    assert parsed.candidates and parsed.candidates[0].content and parsed.candidates[0].content.parts
    data = parsed.candidates[0].content.parts[-1].inline_data
    assert data is not None and data.data is not None
    return Image.open(io.BytesIO(data.data))


def finish_reason(response: dict[str, Any]) -> str:
    parsed = types.GenerateContentResponse._from_response(response=response, kwargs={})
    assert parsed.candidates and parsed.candidates[0].finish_reason is not None
    return parsed.candidates[0].finish_reason.value


@pytest.fixture
def three_lines(tmp_path: Path) -> Path:
    """Two images: the first in variations 1 and 2, the second in variation 1."""
    red, blue = make_png(96, 64), make_png(80, 48, (20, 40, 200))
    return write_jsonl(
        tmp_path / "requests.jsonl",
        [
            ("gen-red-1", request_line(red, 1)),
            ("gen-red-2", request_line(red, 2)),
            ("gen-blue-1", request_line(blue, 1)),
        ],
    )


# --- the whole flow -----------------------------------------------------------------------------


def test_file_job_flows_through_the_sync_sdk(
    clock: Clock, three_lines: Path, tmp_path: Path
) -> None:
    """Upload, create, PENDING → RUNNING → SUCCEEDED on the clock, download, parse each line."""
    with simulator(clock, api_key=KEY) as sim, sdk(sim.base_url) as client:
        uploaded = upload(client, three_lines)
        assert uploaded.name is not None and uploaded.name.startswith("files/")
        assert uploaded.size_bytes == three_lines.stat().st_size
        chunk = sim.stats()["last_request"]
        assert "/upload/v1beta/files?upload_id=" in chunk["path"]
        assert "x-goog-api-key" not in chunk["headers"]  # chunks carry no key, only the upload id

        job = client.batches.create(
            model=MODEL, src=uploaded.name, config={"display_name": "imagelingo-run-1"}
        )
        assert job.name is not None and job.state == types.JobState.JOB_STATE_PENDING
        assert job.display_name == "imagelingo-run-1" and job.model == f"models/{MODEL}"
        assert sim.stats()["batch"]["lines"] == 0

        clock.advance(10)
        assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_RUNNING
        clock.advance(20)
        done = client.batches.get(name=job.name)
        assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.done
        assert done.dest is not None and done.dest.file_name is not None
        assert done.dest.file_name == f"files/batch-{job.name.removeprefix('batches/')}"
        assert len(done.dest.file_name.removeprefix("files/")) > 40

        destination = tmp_path / "results.jsonl"
        assert client.files.download(file=done.dest.file_name, destination=destination) is None
        assert destination.read_bytes() == client.files.download(file=done.dest.file_name)
        stats = sim.stats()["batch"]

    lines = lines_of(destination.read_bytes())
    assert set(lines) == {"gen-red-1", "gen-red-2", "gen-blue-1"}
    assert image_of(lines["gen-red-1"]["response"]).size == (96, 64)
    assert image_of(lines["gen-blue-1"]["response"]).size == (80, 48)
    red_1 = image_of(lines["gen-red-1"]["response"]).tobytes()
    assert red_1 != image_of(lines["gen-red-2"]["response"]).tobytes()  # variations are marked
    assert stats["creates"] == stats["jobs_created"] == 1
    assert stats["jobs"] == {"BATCH_STATE_SUCCEEDED": 1}
    assert stats["files"] == {"UPLOADED": 1, "GENERATED": 1}
    assert stats["lines"] == 3 and stats["line_outcomes"] == {"ok": 3}


def test_operation_carries_what_the_sdk_drops(clock: Clock, three_lines: Path) -> None:
    """The raw Operation: batchStats as strings (zeros omitted), done, output twice."""
    with simulator(clock) as sim, sdk(sim.base_url) as client:
        job = client.batches.create(model=MODEL, src=upload(client, three_lines).name or "")
        name = job.name or ""
        _, pending = raw(sim.base_url, name)
        clock.advance(30)
        _, succeeded = raw(sim.base_url, name)

    meta = pending["metadata"]
    assert meta["@type"].endswith("v1main.GenerateContentBatch")
    assert meta["state"] == "BATCH_STATE_PENDING" and meta["name"] == name
    assert meta["batchStats"] == {"requestCount": "3", "pendingRequestCount": "3"}
    assert meta["inputConfig"]["fileName"].startswith("files/")
    assert "done" not in pending and "endTime" not in meta and "output" not in meta
    meta = succeeded["metadata"]
    assert succeeded["done"] is True
    assert meta["batchStats"] == {"requestCount": "3", "successfulRequestCount": "3"}
    assert meta["endTime"] > meta["createTime"]
    assert meta["output"] == {"responsesFile": f"files/batch-{name.removeprefix('batches/')}"}
    assert succeeded["response"]["@type"].endswith("v1main.GenerateContentBatchOutput")
    assert succeeded["response"]["responsesFile"] == meta["output"]["responsesFile"]


def test_file_job_flows_through_the_async_sdk(clock: Clock, three_lines: Path) -> None:
    """client.aio: upload, create, get, list, download, cancel and delete."""

    async def main(base_url: str) -> tuple[dict[str, dict[str, Any]], types.BatchJob]:
        async with sdk(base_url).aio as client:
            uploaded = await client.files.upload(
                file=three_lines, config=types.UploadFileConfig(mime_type="application/jsonl")
            )
            first = await client.batches.create(model=MODEL, src=uploaded.name or "")
            second = await client.batches.create(model=MODEL, src=uploaded.name or "")
            await client.batches.cancel(name=second.name or "")
            clock.advance(30)
            done = await client.batches.get(name=first.name or "")
            assert done.dest is not None and done.dest.file_name is not None
            data = await client.files.download(file=done.dest.file_name)
            names = [job.name or "" async for job in await client.batches.list()]
            assert names == [second.name, first.name]  # newest first
            cancelled = await client.batches.get(name=second.name or "")
            await client.batches.delete(name=second.name or "")
            return lines_of(data), cancelled

    with simulator(clock) as sim:
        lines, cancelled = anyio.run(main, sim.base_url, backend="asyncio")
        stats = sim.stats()["batch"]
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED and cancelled.dest is None
    assert set(lines) == {"gen-red-1", "gen-red-2", "gen-blue-1"}
    assert all(finish_reason(line["response"]) == "STOP" for line in lines.values())
    assert stats["jobs"] == {"BATCH_STATE_SUCCEEDED": 1}  # the cancelled one was deleted


def test_upload_spans_several_chunks(clock: Clock, tmp_path: Path) -> None:
    """A 17 MiB file goes up in three 8 MiB chunks at the offsets the session expects."""
    big = tmp_path / "big.jsonl"
    big.write_bytes(bytes(range(256)) * (17 * 4096))
    with simulator(clock) as sim, sdk(sim.base_url) as client:
        uploaded = upload(client, big)
        requests = sim.stats()["requests"]
    assert uploaded.size_bytes == big.stat().st_size
    assert uploaded.sha256_hash is not None
    assert (
        base64.b64decode(uploaded.sha256_hash).decode()
        == hashlib.sha256(big.read_bytes()).hexdigest()
    )
    assert requests == 4  # start and three chunks


def test_concurrent_polls_answer_each_line_once(clock: Clock, three_lines: Path) -> None:
    """Twenty polls at once of a job that has just ended: one answer per line, same output."""

    async def main(client: genai.Client, name: str) -> list[types.BatchJob]:
        seen: list[types.BatchJob] = []

        async def one() -> None:
            seen.append(await client.aio.batches.get(name=name))

        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(one)
        return seen

    with simulator(clock) as sim, sdk(sim.base_url) as client:
        job = client.batches.create(model=MODEL, src=upload(client, three_lines).name or "")
        clock.advance(30)
        seen = anyio.run(main, client, job.name or "", backend="asyncio")
        stats = sim.stats()["batch"]
    assert len({job.dest.file_name for job in seen if job.dest}) == 1
    assert len(seen) == 20 and stats["lines"] == 3 and stats["files"]["GENERATED"] == 1


def test_running_job_shows_progress_and_cancel_keeps_the_lines_done(
    clock: Clock, tmp_path: Path
) -> None:
    """Lines are answered as the running time passes; a cancel keeps them as partial results."""
    image = make_png()
    path = write_jsonl(
        tmp_path / "four.jsonl", [(f"v{v}", request_line(image, v)) for v in range(1, 5)]
    )
    with simulator(clock) as sim, sdk(sim.base_url) as client:
        job = client.batches.create(model=MODEL, src=upload(client, path).name or "")
        name = job.name or ""
        clock.advance(10 + 10)  # halfway through the running time
        _, halfway = raw(sim.base_url, name)
        client.batches.cancel(name=name)
        clock.advance(100)
        cancelled = client.batches.get(name=name)
        assert cancelled.dest is not None and cancelled.dest.file_name is not None
        partial = lines_of(client.files.download(file=cancelled.dest.file_name))
        _, final = raw(sim.base_url, name)

        pending_job = client.batches.create(model=MODEL, src=upload(client, path).name or "")
        client.batches.cancel(name=pending_job.name or "")
        cancelled_early = client.batches.get(name=pending_job.name or "")

    assert halfway["metadata"]["state"] == "BATCH_STATE_RUNNING"
    assert halfway["metadata"]["batchStats"] == {
        "requestCount": "4",
        "successfulRequestCount": "2",
        "pendingRequestCount": "2",
    }
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED and cancelled.done
    assert set(partial) == {"v1", "v2"}
    assert final["metadata"]["endTime"] == final["metadata"]["updateTime"]  # the cancel
    assert cancelled_early.state == types.JobState.JOB_STATE_CANCELLED
    assert cancelled_early.dest is None  # cancelled while pending: nothing was done


def test_inline_job_returns_inlined_responses_with_their_metadata(clock: Clock) -> None:
    """Inline input gives inline output; a line's HTTP error becomes its Status."""
    image = make_png()
    requests = [
        types.InlinedRequest(
            contents=[
                types.Content(
                    role="user",
                    parts=[
                        types.Part.from_bytes(data=image, mime_type="image/png"),
                        types.Part(text=instruction(variation=v)),
                    ],
                )
            ],
            config=types.GenerateContentConfig(response_modalities=["IMAGE"]),
            metadata={"key": f"gen-{v}"},
        )
        for v in (1, 2)
    ]
    scenario = {"rules": [{"variation": 2, "responses": ["rate_limit"]}]}
    with simulator(clock, scenario=scenario) as sim, sdk(sim.base_url) as client:
        job = client.batches.create(model=MODEL, src=requests, config={"display_name": "inline"})
        clock.advance(30)
        done = client.batches.get(name=job.name or "")
        _, operation = raw(sim.base_url, job.name or "")

    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None and done.dest.file_name is None
    responses = {r.metadata["key"]: r for r in done.dest.inlined_responses or [] if r.metadata}
    assert set(responses) == {"gen-1", "gen-2"}
    ok = responses["gen-1"].response
    assert ok is not None and ok.candidates and ok.candidates[0].content
    assert ok.candidates[0].content.parts and ok.candidates[0].content.parts[0].inline_data
    failed = responses["gen-2"]
    assert failed.response is None and failed.error is not None
    assert failed.error.code == 429 and "exceeded your current quota" in (
        failed.error.message or ""
    )
    inline = operation["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
    assert inline[1]["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "details" not in inline[1]["error"]  # only with status_details
    assert operation["metadata"]["inputConfig"]["requests"]["requests"][0]["metadata"] == {
        "key": "gen-1"
    }


def test_list_pages_newest_first_and_survives_new_jobs(clock: Clock) -> None:
    """pageSize/pageToken paging, newest first; the SDK's Pager walks every page."""
    with simulator(clock) as sim, sdk(sim.base_url) as client:
        assert list(client.batches.list()) == []
        src = [{"contents": [{"parts": [{"text": instruction()}]}], "metadata": {"key": "k"}}]
        names = [
            client.batches.create(model=MODEL, src=src, config={"display_name": f"job-{i}"}).name
            for i in range(5)
        ]
        listed = [job.name for job in client.batches.list(config={"page_size": 2})]
        status, first_page = raw(sim.base_url, "batches?pageSize=2")
        client.batches.create(model=MODEL, src=src)  # a new job between two pages
        token = first_page["nextPageToken"]
        _, second_page = raw(sim.base_url, f"batches?pageSize=2&pageToken={token}")
        status_bad, _ = raw(sim.base_url, "batches?pageToken=not-a-token")
    assert listed == names[::-1]
    assert status == 200 and [op["name"] for op in first_page["operations"]] == names[:2:-1]
    assert [op["name"] for op in second_page["operations"]] == [names[2], names[1]]
    assert status_bad == 400


def test_delete_jobs_and_files_as_the_api_does(clock: Clock, three_lines: Path) -> None:
    """Deleted jobs are gone; uploads delete; result files (ids over 40 chars) refuse, 400."""
    with simulator(clock) as sim, sdk(sim.base_url) as client:
        uploaded = upload(client, three_lines)
        job = client.batches.create(model=MODEL, src=uploaded.name or "")
        clock.advance(30)
        done = client.batches.get(name=job.name or "")
        assert done.dest is not None and done.dest.file_name is not None
        result = client.files.get(name=done.dest.file_name)
        assert result.source == types.FileSource.GENERATED and result.download_uri

        with pytest.raises(errors.ClientError) as too_long:
            client.files.delete(name=done.dest.file_name)
        with pytest.raises(errors.ClientError) as not_generated:
            client.files.download(file=uploaded.name or "")
        client.files.delete(name=uploaded.name or "")
        with pytest.raises(errors.ClientError) as deleted_file:
            client.files.get(name=uploaded.name or "")
        client.batches.delete(name=job.name or "")
        with pytest.raises(errors.ClientError) as deleted_job:
            client.batches.get(name=job.name or "")
        with pytest.raises(errors.ClientError) as unknown:
            client.batches.cancel(name="batches/nosuchjob")

    assert too_long.value.code == 400 and "cannot be more than 40 characters" in str(too_long.value)
    assert not_generated.value.code == 400
    assert deleted_file.value.code == 404 and deleted_job.value.code == 404
    assert unknown.value.code == 404


def test_raw_snake_case_create_and_the_rest_download_path(clock: Clock) -> None:
    """snake_case bodies and standard base64 are read; ``/download/v1beta/…`` serves the file."""
    data = base64.b64encode(make_png()).decode("ascii")
    request = {
        "contents": [
            {
                "parts": [
                    {"inlineData": {"mimeType": "image/png", "data": data}},
                    {"text": instruction(variation=3)},
                ]
            }
        ],
        "generation_config": {"response_modalities": ["IMAGE"]},
    }
    line = json.dumps({"key": "only", "request": request}).encode()
    body = {"batch": {"display_name": "raw", "input_config": {"file_name": ""}}}
    with simulator(clock) as sim, sdk(sim.base_url) as client:
        uploaded = client.files.upload(
            file=io.BytesIO(line), config={"mime_type": "application/jsonl"}
        )
        body["batch"]["input_config"]["file_name"] = uploaded.name or ""
        created = urllib.request.Request(
            f"{sim.base_url}/v1beta/models/{MODEL}:batchGenerateContent",
            data=json.dumps(body).encode(),
            headers={"x-goog-api-key": KEY, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(created, timeout=10) as response:
            operation = json.loads(response.read())
        clock.advance(30)
        job = client.batches.get(name=operation["name"])
        assert job.dest is not None and job.dest.file_name is not None
        download = urllib.request.Request(
            f"{sim.base_url}/download/v1beta/{job.dest.file_name}:download?alt=media",
            headers={"x-goog-api-key": KEY},
        )
        with urllib.request.urlopen(download, timeout=10) as response:
            lines = lines_of(response.read())
    assert operation["metadata"]["displayName"] == "raw"
    assert image_of(lines["only"]["response"]).size == (96, 64)


def test_keys_are_checked_like_generate_content(clock: Clock) -> None:
    """No key: 403; the wrong key: 400 API_KEY_INVALID; on every batch and file route."""
    with simulator(clock, api_key=KEY) as sim:
        missing = raw(sim.base_url, "batches", key=None)
        wrong = raw(sim.base_url, "files/abc", key="wrong")
        stats = sim.stats()
    assert missing[0] == 403 and missing[1]["error"]["status"] == "PERMISSION_DENIED"
    assert wrong[0] == 400 and wrong[1]["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert stats["outcomes"] == {"unregistered_caller": 1, "bad_key": 1}


def test_path_prefix_and_default_v1_are_served(clock: Clock, three_lines: Path) -> None:
    """A base URL with a path prefix and the SDK's default API version (v1) work end to end."""
    with simulator(clock) as sim, sdk(f"{sim.base_url}/proxy/", api_version=None) as client:
        uploaded = upload(client, three_lines)
        assert uploaded.uri is not None and "/proxy/v1/files/" in uploaded.uri
        job = client.batches.create(model=MODEL, src=uploaded.name or "")
        clock.advance(30)
        assert len(results(client, client.batches.get(name=job.name or ""))) == 3
        paths = sim.stats()["last_request"]["path"]
    assert paths.startswith("/proxy/v1/files/batch-")


# --- each line answered like an interactive request --------------------------------------------


def test_mixed_job_lines_follow_the_scenario_rules(clock: Clock, tmp_path: Path) -> None:
    """Successes, NO_IMAGE, SAFETY, a per-line 429, a reset and a bad image, keyed by line."""
    good, safety, other = make_png(), make_png(color=(1, 2, 3)), make_png(color=(9, 9, 9))
    (tmp_path / "unsafe.png").write_bytes(safety)
    scenario = {
        "rules": [
            {"image": "unsafe.png", "responses": ["image_safety"]},
            {"language": "fr", "responses": ["no_image"]},
            {"variation": 3, "responses": [{"fault": "rate_limit", "retry_delay": 7}]},
            {"variation": 4, "responses": ["reset"]},
        ]
    }
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))
    broken = request_line(other, 1)
    broken["contents"][0]["parts"][0]["inline_data"]["data"] = base64.b64encode(
        b"not an image"
    ).decode()
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            ("ok-1", request_line(good, 1)),
            ("ok-2", request_line(good, 2)),
            ("safety", request_line(safety, 1)),
            ("no-image", request_line(good, 1, "fr", "French")),
            ("rate-limited", request_line(good, 3)),
            ("reset", request_line(good, 4)),
            ("bad-image", broken),
        ],
    )
    with simulator(clock, scenario=tmp_path / "scenario.json") as sim, sdk(sim.base_url) as client:
        done = finished_job(client, clock, path)
        lines = results(client, done)
        _, operation = raw(sim.base_url, done.name or "")
        stats = sim.stats()["batch"]

    assert finish_reason(lines["ok-1"]["response"]) == "STOP"
    assert image_of(lines["ok-2"]["response"]).size == (96, 64)
    assert finish_reason(lines["safety"]["response"]) == "IMAGE_SAFETY"
    assert finish_reason(lines["no-image"]["response"]) == "NO_IMAGE"
    limited = lines["rate-limited"]["error"]
    assert limited["code"] == 429 and limited["status"] == "RESOURCE_EXHAUSTED"
    assert "Please retry in 7s." in limited["message"]
    assert lines["reset"]["error"] == {
        "code": 503,
        "message": "The service is currently unavailable.",
        "status": "UNAVAILABLE",
    }
    assert lines["bad-image"]["error"]["status"] == "INVALID_ARGUMENT"
    assert operation["metadata"]["batchStats"] == {
        "requestCount": "7",
        "successfulRequestCount": "4",
        "failedRequestCount": "3",
    }
    assert stats["line_outcomes"] == {
        "ok": 2,
        "image_safety": 1,
        "no_image": 1,
        "rate_limit": 1,
        "reset": 1,
        "invalid_image": 1,
    }


def test_lines_share_the_per_key_answers_with_interactive_requests(
    clock: Clock, tmp_path: Path
) -> None:
    """A scripted [429, ok] gives the batch line the 429 and the interactive retry the ok."""
    image = make_png()
    scenario = {"rules": [{"variation": 2, "responses": ["rate_limit", "ok"]}]}
    path = write_jsonl(tmp_path / "one.jsonl", [("v2", request_line(image, 2))])
    with simulator(clock, scenario=scenario) as sim, sdk(sim.base_url) as client:
        line = results(client, finished_job(client, clock, path))["v2"]
        retried = client.models.generate_content(
            model=MODEL,
            contents=[
                types.Part.from_bytes(data=image, mime_type="image/png"),
                instruction(variation=2),
            ],
        )
        by_key = sim.stats()["by_key"]
    assert line["error"]["code"] == 429
    assert retried.candidates and retried.candidates[0].finish_reason == types.FinishReason.STOP
    assert list(by_key.values()) == [2]


def test_lines_draw_from_the_profile_as_interactive_requests_do(
    clock: Clock, tmp_path: Path
) -> None:
    """Under ``flaky``, a job's lines get the answers the same first requests get one by one."""
    images = [make_png(color=(i * 9, 255 - i * 9, 77)) for i in range(16)]
    path = write_jsonl(
        tmp_path / "many.jsonl", [(f"i{i}", request_line(im)) for i, im in enumerate(images)]
    )
    with simulator(clock, profile="flaky", seed=3) as sim, sdk(sim.base_url) as client:
        finished_job(client, clock, path)
        in_batch = sim.stats()["batch"]["line_outcomes"]
    with simulator(clock, profile="flaky", seed=3) as sim, sdk(sim.base_url) as client:
        for image in images:
            with contextlib.suppress(errors.APIError):
                client.models.generate_content(
                    model=MODEL,
                    contents=[
                        types.Part.from_bytes(data=image, mime_type="image/png"),
                        instruction(),
                    ],
                )
        one_by_one = sim.stats()["outcomes"]
    assert in_batch == one_by_one
    assert len(in_batch) > 1  # the seed gives a mix, so the comparison means something


def test_lines_are_not_paced_by_the_per_minute_bucket(clock: Clock, tmp_path: Path) -> None:
    """Under ``rate-limited``, interactive calls get 429 past the budget; batch lines do not."""
    image = make_png()
    path = write_jsonl(
        tmp_path / "three.jsonl", [(f"v{v}", request_line(image, v)) for v in (1, 2, 3)]
    )
    with simulator(clock, profile="rate-limited", rpm=1) as sim, sdk(sim.base_url) as client:
        finished_job(client, clock, path)
        stats = sim.stats()["batch"]
    assert stats["line_outcomes"] == {"ok": 3}


def test_line_error_style_is_scriptable(clock: Clock, tmp_path: Path) -> None:
    """gRPC-number codes under a ``status`` key, and details objects, when a job rule asks."""
    image = make_png()
    scenario = {
        "rules": [{"responses": ["overloaded"]}],
        "batch": {
            "jobs": [{"status_codes": "grpc", "error_field": "status", "status_details": True}]
        },
    }
    path = write_jsonl(tmp_path / "one.jsonl", [("only", request_line(image))])
    with simulator(clock, scenario=scenario) as sim, sdk(sim.base_url) as client:
        line = results(client, finished_job(client, clock, path))["only"]
    assert set(line) == {"key", "status"}
    assert line["status"]["code"] == 14 and "status" not in line["status"]
    assert line["status"]["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"


# --- job-level faults ---------------------------------------------------------------------------


def run_job(
    clock: Clock,
    tmp_path: Path,
    jobs: list[dict[str, Any]] | Scenario,
    *,
    seconds: float = 30,
) -> tuple[types.BatchJob, dict[str, Any], Simulator]:
    """One three-line file job under scripted ``batch.jobs``; what the SDK and a raw GET see."""
    path = write_jsonl(
        tmp_path / "job.jsonl", [(f"v{v}", request_line(make_png(), v)) for v in (1, 2, 3)]
    )
    scenario = jobs if isinstance(jobs, Scenario) else {"batch": {"jobs": jobs}}
    with simulator(clock, scenario=scenario) as sim, sdk(sim.base_url) as client:
        job = client.batches.create(model=MODEL, src=upload(client, path).name or "")
        clock.advance(seconds)
        seen = client.batches.get(name=job.name or "")
        _, operation = raw(sim.base_url, job.name or "")
    return seen, operation, sim


def test_expired_job_has_no_results(clock: Clock, tmp_path: Path) -> None:
    """EXPIRED (scripted from Python): done, no output anywhere, no line answered."""
    script = BatchScript(jobs=(JobRule(index=0, ending="expired"),))
    job, operation, sim = run_job(clock, tmp_path, Scenario(rules=(), batch=script))
    assert job.state == types.JobState.JOB_STATE_EXPIRED and job.done and job.dest is None
    assert operation["done"] is True and "output" not in operation["metadata"]
    assert "response" not in operation and "error" not in operation
    assert operation["metadata"]["batchStats"] == {"requestCount": "3", "pendingRequestCount": "3"}
    assert sim.stats()["batch"]["lines"] == 0


def test_failed_job_error_is_dropped_by_the_sdk_but_on_the_wire(
    clock: Clock, tmp_path: Path
) -> None:
    """FAILED: the SDK shows error=None; the raw Operation carries the top-level Status."""
    error = {"code": 3, "message": "Input file is not valid JSONL."}
    job, operation, _ = run_job(clock, tmp_path, [{"ending": "failed", "error": error}])
    assert job.state == types.JobState.JOB_STATE_FAILED and job.error is None and job.dest is None
    assert operation["error"] == error and operation["done"] is True


def test_failed_job_error_with_details_objects(clock: Clock, tmp_path: Path) -> None:
    """status_details puts ``details`` objects in the job error too."""
    _, operation, _ = run_job(clock, tmp_path, [{"ending": "failed", "status_details": True}])
    assert operation["error"]["code"] == 13
    assert operation["error"]["details"][0]["@type"].startswith("type.googleapis.com/google.rpc.")


def test_unknown_state_is_never_done(clock: Clock, tmp_path: Path) -> None:
    """An unknown state reaches the SDK as a synthetic enum with a warning, not done; cancellable."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        job, operation, _ = run_job(clock, tmp_path, [{"ending": "unknown"}], seconds=10_000)
    assert operation["metadata"]["state"] == "BATCH_STATE_SOMETHING_NEW"
    assert "done" not in operation
    assert job.state is not None and job.state.name == "BATCH_STATE_SOMETHING_NEW" and not job.done
    assert any(issubclass(w.category, UserWarning) for w in caught)


def test_no_output_and_inline_output_for_a_file_job(clock: Clock, tmp_path: Path) -> None:
    """``output: none`` is SUCCEEDED without output; ``output: inline`` answers a file job inline."""
    bare, bare_op, _ = run_job(clock, tmp_path, [{"output": "none"}])
    inline, _, _ = run_job(clock, tmp_path, [{"output": "inline"}])
    anonymous, _, _ = run_job(clock, tmp_path, [{"output": "inline", "echo_metadata": False}])
    assert bare.state == types.JobState.JOB_STATE_SUCCEEDED and bare.dest is None
    assert "output" not in bare_op["metadata"] and "response" not in bare_op
    assert inline.dest is not None and inline.dest.file_name is None
    keys = [r.metadata["key"] for r in inline.dest.inlined_responses or [] if r.metadata]
    assert keys == ["v1", "v2", "v3"]
    assert anonymous.dest is not None and anonymous.dest.inlined_responses
    assert [r.metadata for r in anonymous.dest.inlined_responses] == [None, None, None]


def test_results_can_come_back_in_reverse_order(clock: Clock, tmp_path: Path) -> None:
    """``order: reversed``: the responses file and inline answers list the last request first."""
    path = write_jsonl(
        tmp_path / "job.jsonl", [(f"v{v}", request_line(make_png(), v)) for v in (1, 2, 3)]
    )
    scenario = {
        "batch": {
            "jobs": [
                {"order": "reversed", "display_name": "file"},
                {"order": "reversed", "output": "inline"},
            ]
        }
    }
    with simulator(clock, scenario=scenario) as sim, sdk(sim.base_url) as client:
        name = upload(client, path).name or ""
        as_file = client.batches.create(model=MODEL, src=name, config={"display_name": "file"})
        as_inline = client.batches.create(model=MODEL, src=name, config={"display_name": "inl"})
        clock.advance(30)
        file_job = client.batches.get(name=as_file.name or "")
        inline_job = client.batches.get(name=as_inline.name or "")
        data = client.files.download(file=(file_job.dest and file_job.dest.file_name) or "")
    in_file = [json.loads(line)["key"] for line in data.splitlines()]
    assert inline_job.dest is not None and inline_job.dest.inlined_responses is not None
    inline = [r.metadata["key"] for r in inline_job.dest.inlined_responses if r.metadata]
    assert in_file == inline == ["v3", "v2", "v1"]


def test_create_answers_429_for_enqueued_tokens_then_accepts(clock: Clock, tmp_path: Path) -> None:
    """A scripted 429 RESOURCE_EXHAUSTED on create (from a scenario file); the next one passes."""
    scenario = {"batch": {"jobs": [{"display_name": "big-*", "create": ["enqueued_tokens"]}]}}
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))
    src = [{"contents": [{"parts": [{"text": instruction()}]}]}]
    with simulator(clock, scenario=tmp_path / "scenario.json") as sim, sdk(sim.base_url) as client:
        with pytest.raises(errors.ClientError) as refused:
            client.batches.create(model=MODEL, src=src, config={"display_name": "big-1"})
        job = client.batches.create(model=MODEL, src=src, config={"display_name": "big-1"})
        stats = sim.stats()["batch"]
    assert refused.value.code == 429 and refused.value.status == "RESOURCE_EXHAUSTED"
    assert "batch_enqueued_tokens" in json.dumps(refused.value.details)
    assert job.state == types.JobState.JOB_STATE_PENDING
    assert stats["creates"] == 2 and stats["jobs_created"] == 1
    assert stats["jobs"] == {"BATCH_STATE_PENDING": 1}


def test_get_answers_scripted_faults_first(clock: Clock, tmp_path: Path) -> None:
    """``get: [unavailable]``: the job's first GET is a 503, the next one the Operation."""
    src = [{"contents": [{"parts": [{"text": instruction()}]}]}]
    scenario = {"batch": {"jobs": [{"get": ["unavailable"]}]}}
    with simulator(clock, scenario=scenario) as sim, sdk(sim.base_url) as client:
        job = client.batches.create(model=MODEL, src=src)
        with pytest.raises(errors.ServerError) as unavailable:
            client.batches.get(name=job.name or "")
        again = client.batches.get(name=job.name or "")
    assert unavailable.value.code == 503 and unavailable.value.status == "UNAVAILABLE"
    assert again.state == types.JobState.JOB_STATE_PENDING


def test_succeeded_before_the_output_is_downloadable(clock: Clock, three_lines: Path) -> None:
    """``output_delay``: the responses file answers 404 for a while after SUCCEEDED."""
    scenario = {"batch": {"jobs": [{"output_delay": 60}]}}
    with simulator(clock, scenario=scenario) as sim, sdk(sim.base_url) as client:
        done = finished_job(client, clock, three_lines)
        assert done.state == types.JobState.JOB_STATE_SUCCEEDED
        assert done.dest is not None and done.dest.file_name is not None
        with pytest.raises(errors.ClientError) as early:
            client.files.download(file=done.dest.file_name)
        clock.advance(60)
        lines = results(client, done)
    assert early.value.code == 404
    assert len(lines) == 3


def test_status_details_objects_break_the_sdks_parser(clock: Clock) -> None:
    """A line error with ``details`` objects makes batches.get raise a pydantic ValidationError."""
    src = [{"contents": [{"parts": [{"text": instruction()}]}]}]  # no image: a 400 line
    scenario = {"batch": {"jobs": [{"status_details": True}]}}
    with simulator(clock, scenario=scenario) as sim, sdk(sim.base_url) as client:
        job = client.batches.create(model=MODEL, src=src)
        clock.advance(30)
        with pytest.raises(pydantic.ValidationError, match="details"):
            client.batches.get(name=job.name or "")
        _, operation = raw(sim.base_url, job.name or "")
    error = operation["metadata"]["output"]["inlinedResponses"]["inlinedResponses"][0]["error"]
    assert error["code"] == 400 and isinstance(error["details"][0], dict)


def test_upload_chunk_without_status_header_is_retried_by_the_sdk(
    clock: Clock, three_lines: Path
) -> None:
    """``upload_status_missing: 1``: the SDK resends the chunk (after its own 1 s sleep)."""
    scenario = {"batch": {"upload_status_missing": 1}}
    with simulator(clock, scenario=scenario) as sim, sdk(sim.base_url) as client:
        uploaded = upload(client, three_lines)
        stats = sim.stats()
    assert uploaded.size_bytes == three_lines.stat().st_size
    assert stats["requests"] == 3  # start, the dropped chunk, the chunk again
    assert stats["batch"]["files"] == {"UPLOADED": 1}


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"jobs": [{"ending": "vanished"}]}, '"ending" must be one of'),
        ({"jobs": [{"create": ["no_image"]}]}, "is not a job request fault"),
        ({"jobs": [{"get": ["nope"]}]}, "unknown fault 'nope'"),
        ({"jobs": [{"pending": -1}]}, '"pending" must be a number of seconds'),
        ({"jobs": [{"colour": "red"}]}, "unknown field(s) 'colour'"),
        ({"jobs": [{"error": {"code": "13"}}]}, '"error" must be'),
        ({"upload_status_missing": -1}, '"upload_status_missing" must be an integer'),
        ({"jobs": {}}, '"jobs" must be a list'),
    ],
)
def test_batch_section_validation(batch: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="scenario <dict>: batch") as raised:
        Simulator(scenario={"batch": batch})
    assert message in str(raised.value)


# --- the CLI ------------------------------------------------------------------------------------


def test_serve_command_takes_batch_timing() -> None:
    """``--batch-pending``/``--batch-running`` reach the jobs; the stats route counts them."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imagelingo_cli",
            "simulator",
            "serve",
            "--port",
            "0",
            "--batch-pending",
            "600",
            "--batch-running",
            "1.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip().removeprefix("Listening on ")
        with sdk(base_url) as client:
            src = [{"contents": [{"parts": [{"text": instruction()}]}]}]
            job = client.batches.create(model=MODEL, src=src)
        stats = json.loads(urllib.request.urlopen(f"{base_url}/_simulator/stats").read())
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert job.state == types.JobState.JOB_STATE_PENDING
    assert stats["batch"]["jobs"] == {"BATCH_STATE_PENDING": 1}
    assert "batch jobs pending 600s, running 1.5s" in stderr

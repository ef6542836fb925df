"""The end of a log is explicit (protocol.md 4.2): ``log_ws`` closes with 1000 and ``/log``
sends its last chunk only once the job is finished and its output drained, across restarts;
a failure is never dressed up as the end.  Plus the ``offset`` extension of ``log_ws``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from neuro_sdk import Client, JobRestartPolicy, JobStatus, RemoteImage
from neuro_server.runtime.process import ProcessRuntime
from tests.server.conftest import Api

UBUNTU = RemoteImage.new_external_image("ubuntu")
TIMEOUT = 20.0
OFFSET_PROTOCOL = "offset.logs.neuro"


@pytest.fixture
async def client(api: Api) -> AsyncIterator[Client]:
    async with Client(api.url, api.tokens["alice"]) as c:
        yield c


async def _until_status(client: Client, job_id: str, want: set[JobStatus]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while (await client.jobs.status(job_id)).status not in want:
        assert time.monotonic() < deadline, f"job {job_id} did not reach {want}"
        await asyncio.sleep(0.05)


async def _read_ws(api: Api, job_id: str, **kw: Any) -> tuple[bytes, int | None, str]:
    """All binary frames of ``log_ws`` and how it was closed (code, reason)."""
    data = b""
    url = f"{api.url}/jobs/{job_id}/log_ws"
    async with api.session.ws_connect(url, headers=api.headers(), **kw) as ws:
        while True:
            msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            data += msg.data
    return data, (msg.data if msg.type == aiohttp.WSMsgType.CLOSE else None), str(msg.extra)


async def _read_http(api: Api, job_id: str) -> bytes:
    url = f"{api.url}/jobs/{job_id}/log"
    async with api.session.get(url, headers=api.headers()) as resp:
        assert resp.status == 200
        return await asyncio.wait_for(resp.read(), TIMEOUT)


async def test_log_follows_a_restart_and_ends_when_the_job_does(api: Api, client: Client) -> None:
    marker = "$HOME/ran-once"  # (alice's jobs run as her own uid: her home is theirs)
    script = (
        f"if [ -e {marker} ]; then echo second; else touch {marker}; echo first; "
        "sleep 0.5; exit 3; fi"
    )
    job = await client.jobs.start(
        image=UBUNTU,
        preset_name="cpu-small",
        command=f"sh -c '{script}'",
        restart_policy=JobRestartPolicy.ON_FAILURE,
    )
    await _until_status(client, job.id, {JobStatus.RUNNING})
    # both followers connect during the first run: its end is not the end of the log
    (ws_data, code, _), http_data = await asyncio.gather(
        _read_ws(api, job.id), _read_http(api, job.id)
    )
    assert ws_data == http_data == b"first\nsecond\n"
    assert code == aiohttp.WSCloseCode.OK
    st = await client.jobs.status(job.id)
    assert st.status == JobStatus.SUCCEEDED and st.history.restarts == 1


async def test_between_two_runs_no_session_and_the_log_waits_for_the_next(
    api: Api, client: Client
) -> None:
    count = "$HOME/runs-between"
    script = (
        f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; "
        'if [ "$n" -lt 3 ]; then echo run$n; exit 3; fi; echo third; sleep 60'
    )
    job = await client.jobs.start(
        image=UBUNTU,
        preset_name="cpu-small",
        command=f"sh -c '{script}'",
        restart_policy=JobRestartPolicy.ON_FAILURE,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while (st := await client.jobs.status(job.id)).history.restarts < 2:  # (backoff 2 s)
            assert time.monotonic() < deadline, st
            await asyncio.sleep(0.05)
        assert (st.status, st.history.reason) == (JobStatus.RUNNING, "Restarting")
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            url = f"{api.url}/jobs/{job.id}/attach"
            async with api.session.ws_connect(url, headers=api.headers(), params={"stdout": "1"}):
                pass
        assert info.value.status == 404
        async with api.session.post(
            f"{api.url}/jobs/{job.id}/kill", headers=api.headers(), params={"signal": "USR1"}
        ) as resp:
            assert resp.status == 400
            assert "waits to restart (The job exited with code 3" in (await resp.json())["error"]
        # a log opened now goes on with the next run while it runs
        url = f"{api.url}/jobs/{job.id}/log_ws"
        data = b""
        async with api.session.ws_connect(url, headers=api.headers()) as ws:
            while b"third" not in data:
                msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
                assert msg.type == aiohttp.WSMsgType.BINARY, (msg, data)
                data += msg.data
        assert data == b"run1\nrun2\nthird\n"
    finally:
        await client.jobs.kill(job.id)


async def test_offset_extension(api: Api, client: Client) -> None:
    job = await client.jobs.start(
        image=UBUNTU, preset_name="cpu-small", command="sh -c 'echo 0123456789'"
    )
    await _until_status(client, job.id, {JobStatus.SUCCEEDED})
    data, code, _ = await _read_ws(
        api, job.id, params={"offset": "4"}, protocols=(OFFSET_PROTOCOL,)
    )
    assert (data, code) == (b"456789\n", aiohttp.WSCloseCode.OK)
    data, _, _ = await _read_ws(api, job.id, params={"offset": "100"}, protocols=(OFFSET_PROTOCOL,))
    assert data == b""
    # a client that did not ask for the extension gets the stream as it is
    data, _, _ = await _read_ws(api, job.id, params={"offset": "4"})
    assert data == b"0123456789\n"
    for bad in ("-1", "x", "1" * 40, "\u0661"):
        url = f"{api.url}/jobs/{job.id}/log_ws"
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            async with api.session.ws_connect(url, headers=api.headers(), params={"offset": bad}):
                pass
        assert info.value.status == 400


async def test_a_failed_stream_is_not_the_end(
    api: Api, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await client.jobs.start(
        image=UBUNTU, preset_name="cpu-small", command="sh -c 'echo partial'"
    )
    await _until_status(client, job.id, {JobStatus.SUCCEEDED})

    async def broken_logs(self: ProcessRuntime, job_id: str, **kw: Any) -> AsyncIterator[bytes]:
        yield b"partial\n"
        raise RuntimeError("the log file went away")

    monkeypatch.setattr(ProcessRuntime, "logs", broken_logs)
    data, code, reason = await _read_ws(api, job.id)
    assert data == b"partial\n"
    assert code == aiohttp.WSCloseCode.INTERNAL_ERROR and "went away" in reason
    # the chunked body stops without its last chunk: the client sees it truncated
    url = f"{api.url}/jobs/{job.id}/log"
    async with api.session.get(url, headers=api.headers()) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(resp.read(), TIMEOUT)

"""Coalescing on the real stack: a worker process, the real API (SQLite), the fake OpenAI endpoint and its
request log. A burst is one turn, one LLM request and one reply; other users are not held; a command is
answered on its own; a replay of bm_in answers nothing twice."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from beacon.codec import MessageCodec
from beacon.messages import BeaconMessage
from beacon.ops.process import free_port
from tests.local_http import local_http
from tests.streams.harness import (
    Collector,
    RealApi,
    Topics,
    Worker,
    all_committed,
    produce,
    wait_until,
)

pytestmark = pytest.mark.slow

LLM_KEY = "sk-test-fake"


@pytest.fixture
def fake_llm() -> Iterator[str]:
    """The fake OpenAI-compatible server in its own process; yields its base URL (…/v1)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "beacon.fakes.openai", "--port", str(port), "--api-key", LLM_KEY],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        try:
            return local_http.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30, "the fake OpenAI endpoint to answer")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def llm_requests(base_url: str) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = local_http.get(base_url.removesuffix("/v1") + "/_fake/requests", timeout=5).json()
    return answer


def texts(user: str, *items: str) -> list[BeaconMessage]:
    return [BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id=user, text=text,
                                       channel_message_id=f"wamid.{user}.{i}") for i, text in enumerate(items)]


def test_a_burst_of_five_is_one_llm_request_and_one_reply_and_a_replay_answers_nothing_again(
    topics: Topics, codec: MessageCodec, tmp_path: Path, fake_llm: str, start_worker: Callable[..., Worker],
    processes: list[Any], replies: Collector,
) -> None:
    api = RealApi(topics.settings, tmp_path)
    api.env.update({"BEACON_LLM_BASE_URL": fake_llm, "BEACON_LLM_API_KEY": LLM_KEY, "BEACON_LLM_MODEL": "fake"})
    api.start()
    try:
        # The window is left to its default: 1500 ms, since this worker knows an LLM answers.
        worker = start_worker(api.url, llm_base_url=fake_llm)
        worker.wait_assigned()
        burst = texts("ann", "hi", "I have a question", "about my order 123", "it has not arrived", "since monday")
        ping = texts("bob", "/ping")
        produce(topics.settings, [*burst, *ping], codec)

        got = replies.wait_replies(2, timeout=60, workers=[worker])
        ann = [r for r in got if r.user_id == "ann"]
        assert [r.reply_to_id for r in ann] == [burst[-1].id]
        # Bob wrote after Ann's burst, yet his answer came first: her wait held her lane only.
        assert [r.user_id for r in got] == ["bob", "ann"]
        joined = "\n".join(m.text or "" for m in burst)
        assert ann[0].text == f"Echo: {joined}"
        asked = [r for r in llm_requests(fake_llm) if "hi" in r["messages"][-1]["content"]]
        assert [r["messages"][-1]["content"] for r in asked] == [joined]
        wait_until(lambda: all_committed(topics.settings, topics.group), 30, "every offset committed")
        worker.stop()

        # A replay: a fresh consumer group reads bm_in from the start, through the same API.
        before = {r.id for r in replies.unique_replies()}
        requests_before = len(llm_requests(fake_llm))
        replay = Worker(topics.settings, topics.group + "-replay", api.url, tmp_path,
                        {"BEACON_LLM_BASE_URL": fake_llm})
        processes.append(replay)
        replay.start()
        wait_until(lambda: all_committed(topics.settings, topics.group + "-replay"), 60,
                   "the replay to commit every offset")
        replies.catch_up()
        assert {r.id for r in replies.unique_replies()} == before
        assert len(llm_requests(fake_llm)) == requests_before
    finally:
        api.stop()


def test_a_command_in_a_burst_is_answered_on_its_own_and_statuses_are_not_merged(
    topics: Topics, codec: MessageCodec, tmp_path: Path, start_worker: Callable[..., Worker], replies: Collector,
) -> None:
    api = RealApi(topics.settings, tmp_path).start()
    try:
        worker = start_worker(api.url, coalesce_window_ms="1500")
        worker.wait_assigned()
        hi, there, ping, more, text = texts("cy", "hi", "there", "/ping", "more", "text")
        status = BeaconMessage.status_update(channel="whatsapp", account="100", user_id="cy",
                                             channel_message_id="wamid.earlier-reply", status="read")
        produce(topics.settings, [hi, status, there, ping, more, text], codec)

        got = replies.wait_replies(3, timeout=60, workers=[worker])
        assert [(r.text, r.reply_to_id) for r in got] == [
            ("You said: hi\nthere", there.id), ("pong", ping.id), ("You said: more\ntext", text.id),
        ]
        wait_until(lambda: all_committed(topics.settings, topics.group), 30, "every offset committed, the status's too")
        assert worker.metric("beacon_worker_coalesced_messages_total") == 4
    finally:
        api.stop()


def test_a_worker_killed_while_its_group_is_at_the_llm_leaves_one_answer(
    topics: Topics, codec: MessageCodec, tmp_path: Path, fake_llm: str, start_worker: Callable[..., Worker],
    replies: Collector,
) -> None:
    api = RealApi(topics.settings, tmp_path)
    api.env.update({"BEACON_LLM_BASE_URL": fake_llm, "BEACON_LLM_API_KEY": LLM_KEY, "BEACON_LLM_MODEL": "fake"})
    api.start()
    try:
        first = start_worker(api.url, llm_base_url=fake_llm)
        first.wait_assigned()
        burst = texts("kim", "!slow 4", "where is", "my parcel")  # the fake LLM answers it after 4 s
        joined = "\n".join(m.text or "" for m in burst)
        produce(topics.settings, burst, codec)
        wait_until(lambda: any(r["messages"][-1]["content"] == joined for r in llm_requests(fake_llm)), 60,
                   "the group's request at the fake LLM")
        first.signal(signal.SIGKILL)
        first.wait(30)

        second = start_worker(api.url, llm_base_url=fake_llm)
        got = replies.wait_replies(1, timeout=60, workers=[second])
        wait_until(lambda: all_committed(topics.settings, topics.group), 60, "every offset committed after the restart")
        replies.catch_up()
        got = replies.unique_replies()
        assert [(r.text, r.reply_to_id) for r in got] == [("Sorry for the wait.", burst[-1].id)]
    finally:
        api.stop()

"""Media turns play through the worker's own code: webhook, ingest, prepare, history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from langchain_openai import ChatOpenAI

from tests.conftest import REPO, zapvet
from zapvet.embedded import ServiceUrls
from zapvet.evals.runner import run_scenario
from zapvet.evals.scenario import ScenarioError, load_scenario
from zapvet.media.prepare import COULD_NOT, TOO_LARGE
from zapvet.testing.media_rig import FAILED_TRIES, FakeMediaRig
from zapvet.testing.openai_server import FakeOpenAIServer, Reply, image_parts

CLIENT = REPO / "scenarios" / "client"
# Slow: replays media scenarios through ingest, the media step and the graphs.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _scenario(tmp_path: Path, turns: list[dict[str, Any]], **end: Any) -> Path:
    """A one-customer scenario on the example shop with these turns and end checks."""
    data = {
        "name": "media-variant",
        "org": str(REPO / "examples" / "petfeliz.toml"),
        "now": "2026-11-25T14:00:00-03:00",
        "contact": {"phone": "5511977770000", "name": "Ana"},
        "setup": {"pets": [{"name": "Rex"}]},
        "turns": turns,
        "end": end,
    }
    path = tmp_path / "media.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _variant(tmp_path: Path, source: Path, change: Any) -> Path:
    data = yaml.safe_load(source.read_text())
    change(data)
    data["org"] = str(REPO / "examples" / "petfeliz.toml")
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


async def test_media_voice_note_is_fetched_transcribed_and_read_as_the_customers_words(
    database_url: str, rig: FakeMediaRig
) -> None:
    fetched, transcribed = len(rig.gateway.requests), len(rig.openai.transcriptions)
    run = await run_scenario(
        load_scenario(CLIENT / "16-voice-note-booking.yaml"), database_url, media=rig
    )
    assert run.passed, run.failures
    assert len(rig.gateway.requests) == fetched + 1
    assert "getBase64FromMediaMessage" in rig.gateway.requests[-1].path
    (transcription,) = rig.openai.transcriptions[transcribed:]
    assert rig.openai.transcripts[transcription.sha256].startswith("Oi, aqui é a Marina")
    assert run.turns[0].heard == [rig.openai.transcripts[transcription.sha256]]


async def test_media_voice_note_and_text_reach_the_agent_in_the_customers_order(
    tmp_path: Path, database_url: str, rig: FakeMediaRig
) -> None:
    turn = {
        "user": ["primeiro", {"audio": {"transcript": "segundo"}}, "terceiro"],
        "model": [{"say": "Oi, Ana!"}],
    }
    run = await run_scenario(load_scenario(_scenario(tmp_path, [turn])), database_url, media=rig)
    assert run.passed, run.failures
    assert run.turns[0].heard == ["primeiro", "segundo", "terceiro"]


async def test_media_photo_goes_to_the_model_as_an_image(
    tmp_path: Path, database_url: str, rig: FakeMediaRig
) -> None:
    turn = {"user": [{"image": {"caption": "olha a pata dele"}}], "expect": {"heard": ["pata"]}}
    path = _scenario(tmp_path, [turn, {"user": "e agora?"}])
    with FakeOpenAIServer(responder=lambda _: Reply("Recebi a foto.")) as server:
        model = ChatOpenAI(
            model="gpt-4o-mini",
            api_key="test-key",  # type: ignore[arg-type]
            base_url=server.base_url,
            max_retries=0,
        )
        run = await run_scenario(
            load_scenario(path), database_url, model_factory=lambda: model, media=rig
        )
    assert run.passed, run.failures
    (image,) = image_parts(server.requests[0])
    assert image.mimetype == "image/png" and image.data.startswith(b"\x89PNG")
    assert image_parts(server.requests[1]) == []  # a later turn reads it as the worker shows it
    assert "[O cliente enviou uma imagem.]" in json.dumps(
        server.requests[1].body, ensure_ascii=False
    )
    assert run.turns[0].heard == [
        "[O cliente enviou uma imagem, que segue.] Legenda: olha a pata dele"
    ]


@pytest.mark.parametrize(("fail", "tries"), [("5xx", FAILED_TRIES), ("4xx", 1)])
async def test_media_failed_transcription_asks_to_write_without_the_model(
    tmp_path: Path, database_url: str, rig: FakeMediaRig, fail: str, tries: int
) -> None:
    turn = {"user": [{"audio": {"transcript": "quero um banho", "fail": fail}}]}
    before = len(rig.openai.transcriptions)
    run = await run_scenario(
        load_scenario(_scenario(tmp_path, [turn], errors=1)), database_url, media=rig
    )
    assert run.passed, run.failures
    assert len(rig.openai.transcriptions) - before == tries
    assert run.turns[0].reply == COULD_NOT["audio"]
    assert not run.turns[0].agent and (run.turns[0].error or "").startswith(
        "media could not be used: audio:"
    )


async def test_media_notice_is_a_reply_and_a_sticker_is_silence(
    tmp_path: Path, database_url: str, rig: FakeMediaRig
) -> None:
    turns = [
        {"user": [{"video": {"size_mb": 20}}], "expect": {"silent": True}},
        {"user": [{"sticker": {}}], "model": [{"say": "Oi!"}], "expect": {"silent": True}},
    ]
    run = await run_scenario(load_scenario(_scenario(tmp_path, turns)), database_url, media=rig)
    assert run.turns[0].reply == TOO_LARGE["video"]
    assert run.turns[1].reply is None and not run.turns[1].agent
    assert run.failures == [
        "turn 1: expected silence, got a reply",
        "turn 2: 1 scripted outputs unused",  # the model was never asked
    ]


async def test_media_heard_fails_when_the_words_never_reached_the_agent(
    tmp_path: Path, database_url: str, rig: FakeMediaRig
) -> None:
    def change(data: dict[str, Any]) -> None:
        data["turns"][0]["expect"]["heard"] = ["Rua Oscar Freire"]

    path = _variant(tmp_path, CLIENT / "21-location.yaml", change)
    run = await run_scenario(load_scenario(path), database_url, media=rig)
    assert run.failures == ["turn 1: the agent was not given 'Rua Oscar Freire'"]


async def test_media_turns_without_a_rig_fail_the_run(database_url: str) -> None:
    run = await run_scenario(load_scenario(CLIENT / "16-voice-note-booking.yaml"), database_url)
    assert run.failures == [
        "crashed: ScenarioError: media turns need a media rig (as `zapvet eval` starts)"
    ]


def test_media_item_errors_name_the_item(tmp_path: Path) -> None:
    path = _scenario(tmp_path, [{"user": [{"gif": {}}]}])
    with pytest.raises(ScenarioError, match="turns.0.user"):
        load_scenario(path)
    path = _scenario(tmp_path, [{"user": [{"audio": {"transcript": "oi", "fail": "timeout"}}]}])
    with pytest.raises(ScenarioError, match="audio.fail"):
        load_scenario(path)


def test_eval_starts_the_media_fakes_for_media_scenarios(services: ServiceUrls) -> None:
    env = {"DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url}
    result = zapvet("eval", str(CLIENT / "22-transcription-failure.yaml"), env=env)
    assert result.exit_code == 0, result.output
    assert "pass^1 = 1.00 (1/1 scenarios pass all 1 runs)" in result.stdout

"""A scripted OpenAI-compatible server on loopback (chat completions, audio transcriptions),
for tests and benchmarks."""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import math
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from zapvet.testing.loopback import LoopbackFake
from zapvet.testing.media import wav_seconds

#: Characters of tool-call arguments per streamed chunk; small enough that clients must join.
_ARGUMENT_CHUNK = 16
_WORDS = re.compile(r"\s*\S+\s*|\s+")
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>[A-Za-z0-9+/=\s]*)")


@dataclass(frozen=True)
class ToolCall:
    """One function call in a reply; `str` arguments are sent verbatim (even if not JSON)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """What the server answers to one request; with `status` other than 200, `text` is the error."""

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    status: int = 200
    #: Seconds to wait before answering, on top of the server's `latency`.
    delay: float = 0.0
    #: Sent as `retry-after-ms` on errors, so client retries need not back off for real.
    retry_after: float | None = None
    #: Overrides the finish reason ("content_filter", "length"); default: stop or tool_calls.
    finish_reason: str | None = None


@dataclass(frozen=True)
class ImagePart:
    """An `image_url` content part holding a `data:` URL, decoded."""

    data: bytes
    mimetype: str
    detail: str | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class RecordedRequest:
    """A chat completions request as the server received it; header names are lower case."""

    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def images(self) -> list[ImagePart]:
        """Every `data:` image in the request's messages, in order (see `image_parts`)."""
        return image_parts(self)


@dataclass(frozen=True)
class Transcription:
    """An `/audio/transcriptions` request: the form fields and the file's exact bytes."""

    model: str
    language: str | None
    filename: str | None
    content_type: str | None
    data: bytes
    response_format: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def image_parts(request: RecordedRequest) -> list[ImagePart]:
    """The images of `request` sent inline as `data:` URLs, decoded, in message order.

    Remote `https:` images are left out: their bytes never passed through the request.
    """
    found: list[ImagePart] = []
    for message in request.body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            match = _DATA_URL.fullmatch(url) if isinstance(url, str) else None
            if match is None:
                continue
            detail = image.get("detail") if isinstance(image, dict) else None
            data = base64.b64decode(match["data"])
            found.append(ImagePart(data, match["mime"], detail))
    return found


Responder = Callable[[dict[str, Any]], Reply]


class FakeOpenAIServer(LoopbackFake):
    """Answers `/v1/chat/completions` from a FIFO of replies, then from `responder` if given.

    The server runs uvicorn on its own event loop in a background thread, so synchronous
    tests and other event loops can call it; every wait is asynchronous, so hundreds of
    slow requests cost no threads. `responder` runs on that loop and must not block.
    """

    _name = "fake OpenAI server"

    def __init__(
        self,
        *,
        responder: Responder | None = None,
        latency: float = 0.0,
        port: int = 0,
        models: Sequence[str] = ("gpt-4o-mini",),
        transcripts: Mapping[str, str] | None = None,
        default_transcript: str = "Oi, queria marcar um banho pro Thor amanhã.",
    ) -> None:
        super().__init__(port=port)
        #: In `base_url`, so no two servers share one: langchain-openai caches an httpx client
        #: per base URL, bound to the event loop that made it, and a later server on a reused
        #: port would otherwise get a client of a loop that is closed ("Event loop is closed").
        self._prefix = f"/fake-{uuid.uuid4().hex[:12]}"
        #: Transcript per sha256 (hex) of the audio; others get `default_transcript`.
        self.transcripts: dict[str, str] = dict(transcripts or {})
        self.default_transcript = default_transcript
        self._transcriptions: list[Transcription] = []
        self._transcription_faults: deque[int] = deque()
        self._faults_by_audio: dict[str, deque[int]] = {}
        self._responder = responder
        self._latency = latency
        self._models = tuple(models)
        self._replies: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self._peak_in_flight = 0
        self._ids = itertools.count(1)

    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def transcriptions(self) -> list[Transcription]:
        with self._lock:
            return list(self._transcriptions)

    def fail_transcriptions(
        self, status: int, times: int = 1, *, sha256: str | None = None
    ) -> None:
        """Answer the next `times` transcription requests with `status` and OpenAI's error JSON;
        with `sha256` (hex), only those of that audio, whatever else is transcribed between."""
        with self._lock:
            faults = (
                self._transcription_faults
                if sha256 is None
                else self._faults_by_audio.setdefault(sha256, deque())
            )
            faults.extend([status] * times)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        with self._lock:
            return self._peak_in_flight

    @property
    def base_url(self) -> str:
        """The OpenAI `base_url` of this server; known once started when `port` was 0.

        Raises:
            RuntimeError: the port is still to be picked by `start()`.
        """
        return f"{self._origin()}{self._prefix}/v1"

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                route
                for prefix in ("", self._prefix)
                for route in (
                    Route(
                        f"{prefix}/v1/chat/completions", self._chat_completions, methods=["POST"]
                    ),
                    Route(f"{prefix}/v1/models", self._list_models, methods=["GET"]),
                    Route(f"{prefix}/v1/audio/transcriptions", self._transcribe, methods=["POST"]),
                )
            ]
        )

    async def _transcribe(self, request: Request) -> Response:
        """OpenAI's speech to text: multipart `file`, `model`, `language`, `response_format`.

        The text is the one set for the audio's sha256, else `default_transcript`; `usage`
        carries the duration (whole seconds, rounded up) when the audio is a WAV.
        """
        try:
            form = await request.form()
        except Exception:  # Starlette raises several kinds for a body that is not multipart
            return _error_response(Reply("the request body is not multipart/form-data", status=400))
        upload, model = form.get("file"), form.get("model")
        if isinstance(upload, str) or upload is None:
            return _error_response(Reply("you must provide a file", status=400))
        if not isinstance(model, str) or not model:
            return _error_response(Reply("you must provide a model parameter", status=400))
        language, response_format = form.get("language"), form.get("response_format")
        recorded = Transcription(
            model=model,
            language=language if isinstance(language, str) else None,
            filename=upload.filename,
            content_type=upload.content_type,
            data=await upload.read(),
            response_format=response_format if isinstance(response_format, str) else None,
        )
        with self._lock:
            self._transcriptions.append(recorded)
            faults = self._faults_by_audio.get(recorded.sha256) or self._transcription_faults
            fault = faults.popleft() if faults else None
        await self._pause(self._latency)
        if fault is not None:
            return _error_response(Reply(status=fault))
        answer: dict[str, Any] = {
            "text": self.transcripts.get(recorded.sha256, self.default_transcript)
        }
        seconds = wav_seconds(recorded.data)
        if seconds is not None:
            answer["usage"] = {"type": "duration", "seconds": math.ceil(seconds)}
        return _json(answer)

    async def _list_models(self, _request: Request) -> Response:
        models = [
            {"id": m, "object": "model", "created": 0, "owned_by": "zapvet"} for m in self._models
        ]
        return JSONResponse({"object": "list", "data": models})

    async def _chat_completions(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error_response(Reply("the request body is not JSON", status=400))
        if not isinstance(body, dict):
            return _error_response(Reply("the request body is not a JSON object", status=400))
        with self._lock:
            self._requests.append(RecordedRequest(body, dict(request.headers)))
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            reply = self._replies.popleft() if self._replies else None
        try:
            if reply is None and self._responder is not None:
                reply = self._responder(body)
            if reply is None:
                exhausted = "fake OpenAI server: script exhausted (no reply queued, no responder)"
                return _error_response(Reply(exhausted, status=500))
            await self._pause(self._latency + reply.delay)
            if reply.status != 200:
                return _error_response(reply)
            completion = _Completion.build(reply, body, f"chatcmpl-fake{next(self._ids)}")
            if body.get("stream"):
                options = body.get("stream_options") or {}
                chunks = completion.sse(include_usage=bool(options.get("include_usage")))
                return StreamingResponse(chunks, media_type="text/event-stream")
            return _json(completion.message())
        finally:
            with self._lock:
                self._in_flight -= 1


@dataclass(frozen=True)
class _Completion:
    """A successful reply rendered in OpenAI's wire format, whole or as SSE chunks."""

    id: str
    model: str
    text: str | None
    tool_calls: list[dict[str, Any]]
    usage: dict[str, Any]
    finish: str | None = None

    @classmethod
    def build(cls, reply: Reply, body: dict[str, Any], id_: str) -> _Completion:
        tool_calls: list[dict[str, Any]] = [
            {
                "id": call.id or f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": call.name, "arguments": _arguments(call)},
            }
            for call in reply.tool_calls
        ]
        written = len(reply.text or "") + sum(len(_arguments(call)) for call in reply.tool_calls)
        prompt = reply.prompt_tokens
        if prompt is None:
            prompt = max(1, _prompt_chars(body) // 4)
        completion = reply.completion_tokens
        if completion is None:
            completion = max(1, written // 4)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        model = str(body.get("model", "unknown"))
        return cls(id_, model, reply.text, tool_calls, usage, reply.finish_reason)

    @property
    def finish_reason(self) -> str:
        return self.finish or ("tool_calls" if self.tool_calls else "stop")

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text, "refusal": None}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        choice = {"index": 0, "message": message, "logprobs": None}
        return {
            **self._envelope("chat.completion"),
            "choices": [{**choice, "finish_reason": self.finish_reason}],
            "usage": self.usage,
        }

    async def sse(self, *, include_usage: bool) -> AsyncIterator[str]:
        # Async, because Starlette iterates a sync iterator on a worker thread per response.
        extra = {"usage": None} if include_usage else {}
        for delta, finish_reason in self._deltas():
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            yield _event({**self._envelope("chat.completion.chunk"), "choices": [choice], **extra})
        if include_usage:
            yield _event(
                {**self._envelope("chat.completion.chunk"), "choices": [], "usage": self.usage}
            )
        yield "data: [DONE]\n\n"

    def _deltas(self) -> Iterator[tuple[dict[str, Any], str | None]]:
        yield {"role": "assistant", "content": "" if self.text else None, "refusal": None}, None
        for word in _WORDS.findall(self.text or ""):
            yield {"content": word}, None
        for index, call in enumerate(self.tool_calls):
            function = call["function"]
            head = {"id": call["id"], "type": "function"}
            yield _tool_delta(index, head, {"name": function["name"], "arguments": ""}), None
            arguments = function["arguments"]
            for start in range(0, len(arguments), _ARGUMENT_CHUNK):
                piece = arguments[start : start + _ARGUMENT_CHUNK]
                yield _tool_delta(index, {}, {"arguments": piece}), None
        yield {}, self.finish_reason

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": "fp_zapvet_fake",
        }


def _tool_delta(index: int, head: dict[str, Any], function: dict[str, Any]) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **head, "function": function}]}


def _event(payload: dict[str, Any]) -> str:
    # ASCII escapes, as a provider's JSON would carry a lone surrogate ("\\ud83d").
    return f"data: {json.dumps(payload)}\n\n"


def _json(payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload), media_type="application/json")


def _arguments(call: ToolCall) -> str:
    if isinstance(call.arguments, str):
        return call.arguments
    return json.dumps(call.arguments, ensure_ascii=False)


def _prompt_chars(body: dict[str, Any]) -> int:
    total = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
    return total


def _error_response(reply: Reply) -> Response:
    kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}
    error_type = kind.get(reply.status, "server_error" if reply.status >= 500 else "api_error")
    message = reply.text or f"fake OpenAI server: scripted failure (HTTP {reply.status})"
    headers: dict[str, str] = {}
    if reply.retry_after is not None:
        headers["retry-after-ms"] = f"{reply.retry_after * 1000:g}"
    error = {"message": message, "type": error_type, "param": None, "code": error_type}
    return JSONResponse({"error": error}, status_code=reply.status, headers=headers)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a fixed reply in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m zapvet.testing.openai_server",
        description="Fake OpenAI-compatible server answering every chat completion with --text.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--text", default="ok", help="the assistant's reply")
    args = parser.parse_args(argv)
    text: str = args.text
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with FakeOpenAIServer(
        responder=lambda _body: Reply(text), latency=args.latency, port=args.port
    ) as server:
        sys.stdout.write(f"{server.base_url}\n")
        sys.stdout.flush()
        # A timed wait lets the main thread run the signal handler promptly.
        while not stop.wait(0.5):
            pass


if __name__ == "__main__":
    main()

"""One phone call: Twilio Media Streams in, a pipecat pipeline, the dialogue engine, speech out.

    transport in -> Silero VAD -> local Whisper -> dialogue bridge -> Piper -> transport out

The Twilio serializer decodes the caller's 8 kHz mu-law to the pipeline's 16 kHz and encodes
the worker's speech back to 8 kHz mu-law. Models are shared by all calls of the process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import wave
from pathlib import Path

from fastapi import WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.audio_buffer_processor import AudioBufferProcessor
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.workers.runner import WorkerRunner

from channels.seam import Conversations
from channels.voice.bridge import DialogueBridge
from channels.voice.recogniser import Recogniser
from channels.voice.services import LocalWhisperSTT, PiperVoice
from channels.voice.stream_token import StreamGrant
from channels.voice.transfer import CallControl
from channels.voice.tts import PiperServer
from channels.voice.tuning import VoiceTuning

log = logging.getLogger(__name__)


def write_wav(path: Path, audio: bytes, sample_rate: int, channels: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(audio)


class StreamStart(BaseModel):
    """Twilio's `start` message: which stream and call this socket carries, and the TwiML
    `<Parameter>`s. Nothing in it is trusted until the stream token checks out."""

    model_config = ConfigDict(populate_by_name=True)
    stream_sid: str = Field(alias="streamSid", min_length=1, max_length=64)
    call_sid: str = Field(alias="callSid", min_length=1, max_length=64)
    custom_parameters: dict[str, str] = Field(default_factory=dict, alias="customParameters")


class NoStart(Exception):
    """The socket did not open a Media Stream the way Twilio does; the message says how."""


async def read_start(websocket: WebSocket, timeout: float) -> StreamStart:
    """Read `connected` then `start`, within `timeout` seconds of being called. Anything else
    first, or nothing in time, raises NoStart: a socket may not sit open without a call."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    raise NoStart("closed before start")
                try:
                    event = json.loads(message.get("text") or "")
                except ValueError:
                    raise NoStart("not a Media Streams message") from None
                kind = event.get("event") if isinstance(event, dict) else None
                if kind == "connected":
                    continue
                if kind != "start":
                    raise NoStart(f"{str(kind)[:20]!r} before start")
                try:
                    return StreamStart.model_validate(event.get("start"))
                except ValidationError:
                    raise NoStart("malformed start message") from None
    except TimeoutError:
        raise NoStart(f"no start within {timeout:g} s") from None


async def run_call(websocket: WebSocket, start: StreamStart, grant: StreamGrant, conversations: Conversations,
                   recogniser: Recogniser, voice: PiperServer, calls: CallControl | None = None,
                   tuning: VoiceTuning | None = None) -> DialogueBridge:
    """The call on an admitted stream (channels/voice/webhook.py checked it). The caller's and the
    service's numbers come from the signed webhook, through the grant, never from the socket."""
    stream_sid, call_sid = start.stream_sid, grant.call_sid
    caller, service = grant.caller, grant.service
    serializer = TwilioFrameSerializer(
        stream_sid=stream_sid, call_sid=call_sid,
        # Hanging up is the worker's decision, through its own Calls API client.
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
    )
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(audio_in_enabled=True, audio_out_enabled=True, add_wav_header=False,
                                      serializer=serializer),
    )
    tuning = tuning or VoiceTuning()
    stt = LocalWhisperSTT(recogniser)
    tts = PiperVoice(voice)
    bridge = DialogueBridge(conversations, conversation_id=f"voice:{call_sid}",
                            metadata={"call_sid": call_sid, "from": caller, "to": service}, calls=calls, stt=stt,
                            tuning=tuning, speech_pending=lambda: tts.replies_in_progress > 0)
    recording: Path | None = None
    recorder: list[AudioBufferProcessor] = []
    folder = tuning.recordings_dir
    if folder is not None:
        recording = folder / f"{call_sid}.wav"
        # Caller on the left channel, worker on the right, at the telephone's 8 kHz.
        buffer = AudioBufferProcessor(sample_rate=8000, num_channels=2, auto_start_recording=True)

        @buffer.event_handler("on_audio_data")
        async def save(_buffer: object, audio: bytes, sample_rate: int, channels: int) -> None:
            assert recording is not None
            await asyncio.to_thread(write_wav, recording, audio, sample_rate, channels)

        recorder.append(buffer)
    pipeline = Pipeline([
        transport.input(),
        VADProcessor(vad_analyzer=SileroVADAnalyzer(params=tuning.vad_params())),
        stt,
        bridge,
        tts,
        transport.output(),
        *recorder,
    ])
    worker = PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=8000))

    @transport.event_handler("on_client_disconnected")
    async def hung_up(_transport: object, _ws: object) -> None:
        await worker.cancel()

    await WorkerRunner(handle_sigint=False).run(worker)
    saved = str(recording) if recording is not None and recording.exists() else None
    await bridge.call_ended(recording=saved)
    log.info("call %s ended after %d turns", call_sid, len(bridge.results))
    return bridge

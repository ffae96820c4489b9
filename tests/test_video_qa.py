"""Video QA: clipping, decoding and bad input, each describer, the memory cache, retrieval, the CLI.

Media is made in-process with PyAV (slides) and espeak-ng (speech; installed by scripts/setup.sh --test).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from longapps.adapters.video.clips import Clip, audio_by_clip, clip_index, group_by_clip, make_clips
from longapps.adapters.video.decode import VideoError, content_hash, iter_audio, iter_frames, probe
from longapps.adapters.video.describers.base import Segment
from longapps.adapters.video.synth import Part, have_espeak, render_slide, write_video

needs_espeak = pytest.mark.skipif(not have_espeak(), reason="espeak-ng not installed (scripts/setup.sh --test)")

SRT = """1
00:00:02,000 --> 00:00:05,000
The <i>lighthouse</i> keeper counted
forty two ships.

2
00:00:25,000 --> 00:00:28,000
Bread needs flour, water, salt and yeast.
"""
VTT = "WEBVTT\n\n00:00:03.000 --> 00:00:06.000\n<v Ann>Volcanoes erupt molten rock.\n\n00:24.000 --> 00:27.000\nGlaciers carve valleys.\n"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """A folder with small test videos (no speech: fast to make)."""
    d = tmp_path_factory.mktemp("media")
    write_video(d / "slides.mp4", [Part(["Lighthouse report", "Ships counted: 42"], seconds=20),
                                   Part(["Baking bread", "flour water salt yeast"], seconds=20)], audio=False)
    write_video(d / "silent.mkv", [Part(["quiet"], seconds=6)], audio=True)     # audio stream of silence
    write_video(d / "subbed.mp4", [Part(seconds=30)], audio=False)
    (d / "subbed.srt").write_text(SRT)
    write_video(d / "vtt.mp4", [Part(seconds=30)], audio=False)
    (d / "vtt.vtt").write_text(VTT)
    return d


# -- clipping --------------------------------------------------------------------------------------
def test_clips_short_video_is_one_clip():
    assert make_clips(179.0, 80) == [Clip(0, 0.0, 179.0)]
    assert make_clips(0, 80) == []


def test_clips_cover_the_timeline_and_merge_a_short_tail():
    clips = make_clips(400.0, 80)
    assert [(c.start, c.end) for c in clips] == [(0, 80), (80, 160), (160, 240), (240, 320), (320, 400)]
    clips = make_clips(410.0, 80)          # a 10 s tail (< a quarter clip) joins the clip before it
    assert clips[-1].start == 320 and clips[-1].end == 410 and len(clips) == 5
    assert clip_index(79.99, clips) == 0 and clip_index(80.0, clips) == 1 and clip_index(1e9, clips) == 4
    assert clips[1].label == "1:20-2:40"


def test_group_by_clip_yields_every_clip_in_order():
    clips = make_clips(400.0, 80)
    got = [(c.index, items) for c, items in group_by_clip([(1, "a"), (170, "b"), (171, "c")], clips)]
    assert got == [(0, ["a"]), (1, []), (2, ["b", "c"]), (3, []), (4, [])]


def test_audio_by_clip_cuts_blocks_at_clip_boundaries():
    rate = 10
    clips = make_clips(400.0, 80)
    blocks = [(t / rate, np.full(1000, t, np.float32)) for t in range(0, 4000, 1000)]   # 100 s blocks
    out = list(audio_by_clip(iter(blocks), clips, rate))
    assert [c.index for c, _ in out] == [0, 1, 2, 3, 4]
    assert [len(x) for _, x in out] == [800, 800, 800, 800, 800]
    assert out[1][1][199] == 0 and out[1][1][200] == 1000   # the 100 s block edge falls inside clip 1


# -- decoding and bad input ------------------------------------------------------------------------
def test_probe_and_stream_frames(media):
    info = probe(media / "slides.mp4")
    assert info.has_video and not info.has_audio and 39.5 <= info.duration <= 40.6
    frames = list(iter_frames(media / "slides.mp4", fps=1.0))
    assert 39 <= len(frames) <= 41
    assert all(b.time > a.time for a, b in zip(frames, frames[1:]))
    assert frames[0].image.shape == (360, 640, 3)


def test_audio_stream_decodes_to_16k_mono(media):
    info = probe(media / "silent.mkv")
    assert info.has_audio
    n = sum(len(x) for _, x in iter_audio(media / "silent.mkv"))
    assert abs(n / 16000 - info.duration) < 0.5


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "notes.mp4").write_text("just text, not a video\n" * 20), "not a video file"),
    (lambda d: (d / "empty.mp4").write_bytes(b""), "not a video file"),
])
def test_bad_files_give_one_line_errors(tmp_path, make, message):
    make(tmp_path)
    f = next(tmp_path.iterdir())
    with pytest.raises(VideoError, match=message) as err:
        probe(f)
    assert "\n" not in str(err.value)


def test_truncated_unknown_codec_and_zero_length(media, tmp_path):
    data = (media / "slides.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])        # the moov atom is gone
    with pytest.raises(VideoError, match="corrupt"):
        probe(tmp_path / "cut.mp4")
    write_video(tmp_path / "x.avi", [Part(["x"], seconds=3)], audio=False, codec="mpeg4")
    raw = bytearray((tmp_path / "x.avi").read_bytes())
    for _ in range(2):                                                   # both FourCC fields
        i = raw.find(b"FMP4")
        raw[i:i + 4] = b"QQQQ"
    (tmp_path / "unknown.avi").write_bytes(bytes(raw))
    with pytest.raises(VideoError, match="unknown video codec"):
        probe(tmp_path / "unknown.avi")
    import av

    with av.open(str(tmp_path / "zero.mkv"), "w") as out:                # header only, no packets
        s = out.add_stream("libx264", rate=2)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    with pytest.raises(VideoError, match="0 seconds|0-second"):
        probe(tmp_path / "zero.mkv")


# -- describers ------------------------------------------------------------------------------------
def test_subtitles_sidecar_srt_and_vtt(media):
    from longapps.adapters.video.describers.subtitles import SubtitlesDescriber

    for name, first, second in (("subbed.mp4", "The lighthouse keeper counted forty two ships.",
                                 "Bread needs flour, water, salt and yeast."),
                                ("vtt.mp4", "Volcanoes erupt molten rock.", "Glaciers carve valleys.")):
        info = probe(media / name)
        clips = make_clips(200, 20)            # not the video's length: force two clips over 0-40 s
        got = SubtitlesDescriber().describe_file(media / name, info, clips)
        assert [s.text for s in got[0]] == [first]
        assert [s.text for s in got[1]] == [second]
        assert got[0][0].start == pytest.approx(2.0 if name == "subbed.mp4" else 3.0)


def test_subtitles_inside_the_container(media, tmp_path):
    import av

    from longapps.adapters.video.describers.subtitles import SubtitlesDescriber

    out_path = tmp_path / "embedded.mkv"
    src = av.open(str(media / "subbed.srt"))
    with av.open(str(out_path), "w") as out:
        vs = out.add_stream("libx264", rate=2)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        st = out.add_stream_from_template(src.streams.subtitles[0])
        for i in range(60):
            f = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            f.pts = i
            for p in vs.encode(f):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        for pkt in src.demux(src.streams.subtitles[0]):
            if pkt.dts is not None:
                pkt.stream = st
                out.mux(pkt)
    src.close()
    info = probe(out_path)
    assert info.subtitle_streams and 29 <= info.duration <= 31       # the cues do not lengthen the video
    got = SubtitlesDescriber().describe_file(out_path, info, make_clips(info.duration, 80))
    assert [s.text for s in got[0]] == ["The lighthouse keeper counted forty two ships.",
                                        "Bread needs flour, water, salt and yeast."]


def test_unreadable_subtitle_file_is_a_note(media, tmp_path):
    from longapps.adapters.video.describers.subtitles import SubtitlesDescriber

    shutil.copy(media / "slides.mp4", tmp_path / "v.mp4")
    (tmp_path / "v.srt").write_bytes(os.urandom(3000))
    d = SubtitlesDescriber()
    got = d.describe_file(tmp_path / "v.mp4", probe(tmp_path / "v.mp4"), make_clips(40, 80))
    assert got == {} and len(d.notes) == 1 and "v.srt" in d.notes[0] and "\n" not in d.notes[0]


@needs_espeak
def test_speech_describer_transcribes_espeak_and_notes_silence(tmp_path):
    from longapps.adapters.video.describers.speech import SpeechDescriber
    from longapps.adapters.video.synth import speak

    samples = speak("The lighthouse keeper counted forty two ships in the harbour.", rate=16000)
    d = SpeechDescriber()
    segs = d.describe_audio(Clip(3, 240.0, 320.0), samples, 16000)
    text = " ".join(s.text for s in segs).lower()
    assert "lighthouse" in text and "ships" in text
    assert all(240.0 <= s.start <= s.end <= 320.0 for s in segs)     # times are on the video's timeline
    quiet = SpeechDescriber()
    quiet._model = d.model
    assert quiet.describe_audio(Clip(0, 0, 5), np.zeros(80000, np.float32), 16000) == []
    quiet.finish()
    assert quiet.notes == ["no speech found in the audio track"]


def test_ocr_reads_slides_once_per_change(media):
    from longapps.adapters.video.describers.ocr import OcrDescriber

    d = OcrDescriber(min_gap=1.0)
    clips = make_clips(40, 80)
    for f in iter_frames(media / "slides.mp4", fps=1.0):
        d.add_frame(clips[0], f)
    segs = d.end_clip(clips[0])
    text = " ".join(s.text for s in segs).lower()
    assert "lighthouse report" in text and "baking bread" in text and "ships counted: 42" in text
    assert d.frames_read == 2 and d.frames_seen >= 39          # two slides -> two OCR runs


def test_respace_puts_back_dropped_spaces():
    from longapps.adapters.video.describers.ocr import respace

    # 'ab cd': 10 px wide characters, 2 px apart inside a word, 14 px between words
    xs = [(0, 10), (12, 22), (36, 46), (48, 58)]
    boxes = [[[a, 0], [b, 0], [b, 10], [a, 10]] for a, b in xs]
    assert respace("abcd", boxes) == "ab cd"
    assert respace("abc", boxes) == "abc"                       # boxes do not match: unchanged
    spaced = [[[a, 0], [b, 0], [b, 10], [a, 10]] for a, b in [(0, 10), (12, 22), (22, 24), (36, 46), (48, 58)]]
    assert respace("ab cd", spaced) == "ab cd"                  # a line the recogniser spaced is left alone


def _tiny_vlm(folder: Path) -> Path:
    """A tiny random LLaVA (CLIP vision + Llama text) with a word-level tokenizer, saved to `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    words = "a the frame shows person slide text red blue green describe what is in this video one sentence .".split()
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "<pad>", "<image>"] + words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.decoder = decoders.WordPiece(prefix="##")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>")
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    proc = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                             crop_size={"height": 32, "width": 32}),
                          tokenizer=tok, patch_size=16, vision_feature_select_strategy="default",
                          image_token="<image>", num_additional_image_tokens=1)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=16, projection_dim=16),
        text_config=LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                                bos_token_id=1, eos_token_id=2, pad_token_id=3),
        image_token_index=vocab["<image>"], vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(cfg).save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder


def test_caption_describer_with_a_tiny_random_vlm(tmp_path, media):
    from longapps.adapters.video.describers.caption import CaptionDescriber

    folder = _tiny_vlm(tmp_path / "tiny-vlm")
    d = CaptionDescriber(str(folder), frames_per_clip=2, max_new_tokens=4)
    clip = Clip(0, 0.0, 40.0)
    frames = list(iter_frames(media / "slides.mp4", fps=1.0))
    for f in frames:
        d.add_frame(clip, f)
    segs = d.end_clip(clip)
    # one caption per half, from the frame nearest each half's middle (10 s and 30 s)
    assert [s.start for s in segs] == [pytest.approx(10.0, abs=0.6), pytest.approx(30.0, abs=0.6)]
    assert all(isinstance(s.text, str) and s.text for s in segs)


# -- memory cache and retrieval --------------------------------------------------------------------
def _cfg(**kw):
    from longapps.pipelines.video_qa import VideoQAConfig

    return VideoQAConfig(**{"describers": ("subtitles",), "clip_seconds": 20, **kw})


def test_memory_is_cached_by_content_and_written_atomically(media, tmp_path, hashing_encoder, monkeypatch):
    from longapps.pipelines import video_qa

    video = tmp_path / "talk.mp4"
    shutil.copy(media / "subbed.mp4", video)
    shutil.copy(media / "subbed.srt", tmp_path / "talk.srt")
    first = video_qa.VideoIndexer(_cfg(), encoder=hashing_encoder).index(video)
    assert not first.cached and len(first.memory.clips) == 1       # 30 s < 180 s: one clip
    assert "lighthouse" in first.memory.clips[0].text().lower()

    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr("longapps.adapters.video.describe.describe_video", boom)
    moved = tmp_path / "renamed.mp4"
    video.rename(moved)                                            # same bytes, other name: still cached
    (tmp_path / "talk.srt").rename(tmp_path / "renamed.srt")
    second = video_qa.VideoIndexer(_cfg(), encoder=hashing_encoder).index(moved)
    assert second.cached and second.memory.clips[0].text() == first.memory.clips[0].text()
    assert second.folder == first.folder and (first.folder / "CURRENT").exists()
    # another setting that shapes the memory -> another folder; a failure there leaves nothing behind
    with pytest.raises(AssertionError):
        video_qa.VideoIndexer(_cfg(clip_seconds=10), encoder=hashing_encoder).index(moved)
    failed = _cfg(clip_seconds=10)
    assert not video_qa.memory_folder(content_hash(moved), failed, video_qa.sidecar_digest(moved, failed)).exists()
    # an edited sidecar subtitle file is new input: a new memory, not the stale one
    (tmp_path / "renamed.srt").write_text(SRT.replace("forty two", "ninety"))
    monkeypatch.undo()
    third = video_qa.VideoIndexer(_cfg(), encoder=hashing_encoder).index(moved)
    assert not third.cached and "ninety" in third.memory.clips[0].text()


def test_half_written_snapshot_is_ignored(media, tmp_path, hashing_encoder):
    from longapps.pipelines import video_qa

    video = tmp_path / "v.mp4"
    shutil.copy(media / "subbed.mp4", video)
    shutil.copy(media / "subbed.srt", tmp_path / "v.srt")
    cfg = _cfg(clip_seconds=30)
    folder = video_qa.memory_folder(content_hash(video), cfg, video_qa.sidecar_digest(video, cfg))
    (folder / "snapshots" / ".tmp-123-abc").mkdir(parents=True)       # a run killed while writing
    (folder / "snapshots" / ".tmp-123-abc" / "memory.json").write_text("{\"trunc")
    res = video_qa.VideoIndexer(cfg, encoder=hashing_encoder).index(video)
    assert not res.cached and res.memory.clips
    assert not (folder / "snapshots" / ".tmp-123-abc").exists()


def test_retrieval_finds_the_clip_with_the_answer(media, tmp_path, hashing_encoder):
    from longapps.pipelines.video_qa import VideoQA

    video = tmp_path / "long.mp4"
    write_video(video, [Part(seconds=200)], audio=False, fps=1)
    cues = ["Volcanoes erupt molten rock and ash.", "Glaciers carve deep valleys in mountains.",
            "Coral reefs shelter many fish species.", "Deserts receive very little rain each year."]
    srt = "".join(f"{i + 1}\n00:0{(i * 50 + 10) // 60}:{(i * 50 + 10) % 60:02d},000 --> "
                  f"00:0{(i * 50 + 14) // 60}:{(i * 50 + 14) % 60:02d},000\n{c}\n\n" for i, c in enumerate(cues))
    (tmp_path / "long.srt").write_text(srt)
    qa = VideoQA(video, _cfg(clip_seconds=50, lexical_weight=0.3), encoder=hashing_encoder)
    assert len(qa.memory.clips) == 4
    for i, q in enumerate(["Where does molten rock come from?", "What carves valleys?",
                           "What shelters fish?", "Which places get little rain?"]):
        top = qa.retrieve(q, k=2)
        assert top[0].index == i and top[0].start == i * 50.0
        assert top[0].score >= top[1].score


def test_video_without_text_answers_that_it_has_none(media, tmp_path, hashing_encoder):
    from longapps.pipelines.video_qa import VideoQA

    qa = VideoQA(media / "silent.mkv", _cfg(describers=("subtitles", "speech")), encoder=hashing_encoder)
    ans = qa.ask("What is said?")
    assert ans.clips == [] and "no text" in ans.answer
    assert any("no text found" in n for n in qa.indexed.notes)


# -- CLI -------------------------------------------------------------------------------------------
def _run(*args: str, stdin: str | None = None):
    from longapps.cli import main

    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


def test_cli_index_json_then_cached(media, tmp_path):
    video = tmp_path / "talk.mp4"
    shutil.copy(media / "subbed.mp4", video)
    shutil.copy(media / "subbed.srt", tmp_path / "talk.srt")
    r = _run("video-index", str(video), "--describers", "subtitles,ocr", "--json", "--show")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["cached"] is False and out["clips"] == 1 and "lighthouse" in json.dumps(out["clip_texts"]).lower()
    r = _run("video-index", str(video), "--describers", "subtitles,ocr")
    assert r.exit_code == 0 and "from cache" in r.stdout


def test_cli_bad_inputs_are_one_line_errors(media, tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    r = _run("video-index", str(tmp_path / "notes.mp4"))
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: notes.mp4: not a video")
    r = _run("video-qa", str(tmp_path / "missing.mp4"), "why?")
    assert r.exit_code == 2 and "video not found" in r.stderr and "Traceback" not in r.stderr
    r = _run("video-index", str(tmp_path / "notes.mp4"), str(media / "slides.mp4"), "--describers", "subtitles")
    assert r.exit_code == 2 and "not a video" in r.stderr and "slides.mp4: 1 clips" in r.stdout  # the good one is indexed
    r = _run("video-index", str(media / "slides.mp4"), "--describers", "nope")
    assert r.exit_code == 2 and "unknown nope" in r.stderr


def test_cli_question_before_indexing_indexes_first(media, tmp_path):
    video = tmp_path / "fresh.mp4"
    shutil.copy(media / "subbed.mp4", video)
    shutil.copy(media / "subbed.srt", tmp_path / "fresh.srt")
    r = _run("video-qa", str(video), "How many ships were counted?", "--describers", "subtitles", "--retrieve-only",
             "--json")
    assert r.exit_code == 0, r.output
    assert "was not indexed yet" in r.stderr
    hit = json.loads(r.stdout.strip().splitlines()[-1])
    assert hit["clips"][0]["label"] == "0:00-0:30" and "ships" in hit["clips"][0]["text"]


def test_cli_questions_from_stdin_and_the_interactive_prompt(media, tmp_path):
    video = tmp_path / "s.mp4"
    shutil.copy(media / "subbed.mp4", video)
    shutil.copy(media / "subbed.srt", tmp_path / "s.srt")
    lines = json.dumps({"question": "How many ships were counted?", "id": 7}) + "\n"
    r = _run("video-qa", str(video), "--questions", "-", "--describers", "subtitles", "--retrieve-only", stdin=lines)
    assert r.exit_code == 0, r.output
    hit = json.loads(r.stdout.strip().splitlines()[-1])
    assert hit["id"] == 7 and hit["clips"][0]["label"] == "0:00-0:30"
    r = _run("video-qa", str(video), "--questions", "-", "--describers", "subtitles", "--retrieve-only",
             stdin=lines + "not json\n")
    assert r.exit_code == 2 and "stdin:2: expected a JSON object" in r.stderr
    r = _run("video-qa", str(video), "-i", "--describers", "subtitles", "--retrieve-only",
             stdin="How many ships were counted?\n   \n")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("question> ") == 2 and "0:00-0:30" in r.stdout   # an empty line ends the session
    r = _run("video-qa", str(video), "why?", "-i")
    assert r.exit_code == 2 and "give one of" in r.stderr


@pytest.mark.slow
def test_cli_answers_with_the_packaged_llm(media, tmp_path):
    video = tmp_path / "q.mp4"
    shutil.copy(media / "subbed.mp4", video)
    shutil.copy(media / "subbed.srt", tmp_path / "q.srt")
    qs = tmp_path / "qs.jsonl"
    qs.write_text(json.dumps({"question": "What does bread need?",
                              "choices": ["flour, water, salt and yeast", "molten rock", "forty glaciers"]}) + "\n"
                  + json.dumps({"question": "What did the keeper count?"}) + "\n")
    r = _run("video-qa", str(video), "--questions", str(qs), "--describers", "subtitles")
    assert r.exit_code == 0, r.output
    a, b = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert a["choice"] == 0 and a["answer"] == "flour, water, salt and yeast"
    assert a["clips"][0]["label"] == "0:00-0:30" and len(a["choice_scores"]) == 3
    assert isinstance(b["answer"], str) and b["answer"] and b["clips"][0]["start"] == 0.0
    r = _run("video-qa", str(video), "What does bread need?", "--choices", "yeast", "rock", "--describers",
             "subtitles")
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == "yeast"


def test_file_that_breaks_off_is_indexed_up_to_the_break_with_a_note(tmp_path, hashing_encoder):
    from longapps.pipelines.video_qa import VideoIndexer

    write_video(tmp_path / "full.mkv", [Part(["first slide"], seconds=30), Part(["second slide"], seconds=30)],
                audio=False)
    data = (tmp_path / "full.mkv").read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) * 2 // 3])
    res = VideoIndexer(_cfg(describers=("ocr",), clip_seconds=80), encoder=hashing_encoder).index(tmp_path / "cut.mkv")
    assert any("truncated" in n or "stopped" in n for n in res.notes), res.notes
    assert "first slide" in res.memory.clips[0].text().lower()


class _WordLM:
    """A stand-in for CausalLM in prompt-fitting tests: one token per word."""

    context_length = 10_000

    class tokenizer:  # noqa: N801 - mimics the HF tokenizer API used by Reader._head
        @staticmethod
        def __call__(text, add_special_tokens=False):
            return {"input_ids": text.split()}

        @staticmethod
        def decode(ids):
            return " ".join(ids)

    tokenizer = tokenizer()

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]

    def chat_ids(self, system, user, assistant_prefix=""):
        return (system + " " + user).split()


def test_reader_keeps_the_sentences_nearest_the_question_within_budget():
    from longapps.pipelines.qa_reader import Context, Reader

    text = ("Volcanoes erupt molten rock. Glaciers carve deep valleys slowly. Coral reefs shelter fish. "
            "Deserts get little rain. Rivers carry sediment to the sea.")
    (got,) = Reader(_WordLM(), context_tokens=6, cut="relevant").fit("What do glaciers carve?",
                                                                     [Context("Clip 0:00-1:20", text)])
    assert got.text == "Glaciers carve deep valleys slowly."
    (got,) = Reader(_WordLM(), context_tokens=14, cut="relevant").fit("What do glaciers carve?", [Context("c", text)])
    # the best sentence first, then the budget filled in text order, gaps marked
    assert got.text == "Volcanoes erupt molten rock. Glaciers carve deep valleys slowly. Coral reefs shelter fish."
    head = Reader(_WordLM(), context_tokens=4, cut="head").fit("What do glaciers carve?", [Context("c", text)])
    assert head[0].text == "Volcanoes erupt molten rock."
    # two contexts share the budget; a short one fits whole and leaves its share to the other
    both = Reader(_WordLM(), context_tokens=12, cut="relevant").fit(
        "Which rivers carry sediment?", [Context("a", "Short one."), Context("b", text)])
    assert both[0].text == "Short one." and "Rivers carry sediment to the sea." in both[1].text


def test_speech_keeps_confident_text_even_when_no_speech_prob_is_high():
    """Whisper's silence rule needs both a high no-speech probability and a poor transcript; clean
    synthetic speech often scores no_speech_prob 0.8-0.9 yet is transcribed well."""
    from types import SimpleNamespace

    from longapps.adapters.video.describers.speech import SpeechDescriber

    segs = [SimpleNamespace(start=0.0, end=2.0, text=" kept, clean speech", no_speech_prob=0.9, avg_logprob=-0.5),
            SimpleNamespace(start=2.0, end=4.0, text=" dropped noise", no_speech_prob=0.9, avg_logprob=-1.5),
            SimpleNamespace(start=4.0, end=6.0, text=" kept, unsure", no_speech_prob=0.1, avg_logprob=-1.5)]
    fake = SimpleNamespace(model=SimpleNamespace(is_multilingual=False),
                           transcribe=lambda audio, **kw: (iter(segs), None))
    d = SpeechDescriber()
    d._model = fake
    out = d.describe_audio(Clip(1, 80.0, 160.0), np.full(16000 * 6, 0.1, np.float32), 16000)
    assert [s.text for s in out] == ["kept, clean speech", "kept, unsure"]
    assert out[0].start == 80.0 and out[1].end == 86.0

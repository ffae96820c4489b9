"""`longapps video-index` and `longapps video-qa`: thin click commands over longapps.pipelines.video_qa."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import click

from longapps.cli.errors import friendly_errors, show_progress
from longapps.cli.ray_option import ray_option
from longapps.resources import LongappsError

CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def memory_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options that shape a video's memory (shared by both commands)."""
    opts = [
        click.option("--clip-seconds", default=80.0, show_default=True, type=click.FloatRange(1, min_open=False),
                     help="Clip length (a video shorter than 180 s is one clip)."),
        click.option("--fps", default=1.0, show_default=True, type=click.FloatRange(0.01, 30),
                     help="Frames sampled per second for on-screen text / captions."),
        click.option("--describers", default="subtitles,speech,ocr", show_default=True,
                     help="Comma-separated: subtitles, speech, ocr, caption."),
        click.option("--speech", "speech_mode", type=click.Choice(["auto", "on", "off"]), default="auto",
                     show_default=True, help="auto: transcribe only when the video has no subtitles."),
        click.option("--whisper", default=None,
                     help="Whisper model: size name (base.en, small, ...), hub id or CTranslate2 folder "
                          "(default: packaged tiny.en)."),
        click.option("--language", default=None, help="Spoken language code for Whisper (default: detect)."),
        click.option("--caption-model", default=None,
                     help="Image-text-to-text model (HF id or folder) that describes frames; off by default."),
        click.option("--caption-frames", default=1, show_default=True, type=click.IntRange(1, 16),
                     help="Frames captioned per clip."),
        click.option("--subtitles", "subtitles_file", default=None, type=click.Path(dir_okay=False),
                     help="Subtitle file (.srt/.vtt) to use instead of looking next to the video."),
        click.option("--model", default=None, help="Text encoder (default: packaged all-MiniLM-L6-v2)."),
        click.option("--device", default=None, help="cpu / cuda (default: cuda when present)."),
        click.option("--no-progress", is_flag=True, help="Hide progress bars."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def make_config(clip_seconds: float, fps: float, describers: str, speech_mode: str, whisper: str | None,
                language: str | None, caption_model: str | None, caption_frames: int, subtitles_file: str | None,
                model: str | None, device: str | None, **answer: Any) -> Any:
    from longapps.adapters.video.describers import NAMES
    from longapps.pipelines.video_qa import VideoQAConfig

    names = tuple(n.strip() for n in describers.split(",") if n.strip())
    bad = [n for n in names if n not in NAMES]
    if bad or not names:
        raise LongappsError(f"--describers: unknown {', '.join(bad) or '(none given)'} "
                            f"(choose from {', '.join(NAMES)})")
    if subtitles_file and not Path(subtitles_file).is_file():
        raise LongappsError(f"subtitle file not found: {subtitles_file}")
    return VideoQAConfig(clip_seconds=clip_seconds, fps=fps, describers=names, speech=speech_mode, whisper=whisper,
                         language=language, caption_model=caption_model, caption_frames=caption_frames,
                         subtitles=str(Path(subtitles_file).resolve()) if subtitles_file else None, model=model,
                         device=device, **answer)


def _rtf(seconds: dict[str, float], duration: float) -> str:
    keys = [k for k in ("subtitles", "speech", "ocr", "caption", "decode_audio", "decode_video", "encode")
            if k in seconds]
    return ", ".join(f"{k} {seconds[k]:.1f}s (x{seconds[k] / max(duration, 1e-9):.3f})" for k in keys)


@click.command("video-index", context_settings=CTX)
@click.argument("videos", nargs=-1, required=True, type=click.Path(path_type=Path))
@memory_options
@click.option("--force", is_flag=True, help="Index again even when the memory is cached.")
@click.option("--show", is_flag=True, help="Print every clip's text.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per video.")
@ray_option
def video_index(videos: tuple[Path, ...], force: bool, show: bool, as_json: bool, no_progress: bool,
                ray: str | None, **opts: Any) -> None:
    """Describe VIDEOS clip by clip (subtitles, speech, on-screen text) and store their memory.

    The memory is cached by the video's content: indexing again (or asking questions) does not decode or
    transcribe again. A video that cannot be read gives one error line; the others are still indexed.

    \b
    Examples:
      longapps video-index lecture.mp4
      longapps video-index *.mkv --clip-seconds 60 --whisper base.en
      longapps video-index talk.mp4 --caption-model HuggingFaceTB/SmolVLM-256M-Instruct
    """
    friendly_errors(_index)(videos, force, show, as_json, no_progress, opts, ray)


def _index(videos, force, show, as_json, no_progress, opts, ray=None) -> None:
    from longapps.pipelines.video_qa import VideoIndexer

    cfg = make_config(**opts)
    indexer = VideoIndexer(cfg, progress=show_progress(no_progress), ray=ray)
    failed = 0
    for v in videos:
        try:
            res = indexer.index(v, force=force)
        except LongappsError as err:
            if len(videos) == 1:
                raise
            click.echo(f"error: {err}", err=True)
            failed += 1
            continue
        mem = res.memory
        for note in res.notes:
            click.echo(f"note: {note}", err=True)
        dur = float(mem.video.get("duration", 0.0))
        if as_json:
            click.echo(json.dumps({"video": str(v), "cached": res.cached, "duration": dur, "clips": len(mem.clips),
                                   "memory": str(res.folder), "notes": res.notes,
                                   "seconds": {k: round(x, 3) for k, x in res.seconds.items()},
                                   **({"clip_texts": [c.to_dict() for c in mem.clips]} if show else {})}))
        else:
            how = "from cache" if res.cached else _rtf(res.seconds, dur)
            nonempty = sum(not c.empty for c in mem.clips)
            click.echo(f"{v}: {len(mem.clips)} clips ({nonempty} with text), {dur / 60:.1f} min; {how}")
            if show:
                for c in mem.clips:
                    click.echo(click.style(f"[{c.clip.label}]", bold=True))
                    click.echo(c.text() or "(no text)")
    if failed:
        raise SystemExit(2)


@click.command("video-qa", context_settings=CTX)
@click.argument("video", type=click.Path(path_type=Path))
@click.argument("question", nargs=-1)
@click.option("--choices", "choices", multiple=True,
              help="Answer choices, written after the question: --choices A B C D (the LLM picks one by "
                   "log-likelihood).")
@click.option("--questions", "questions_file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              default=None,
              help='JSONL, one {"question": ..., "choices": [...]} per line (choices optional): many '
                   "questions, one model load; prints JSON lines. '-' reads stdin and answers each line as "
                   "it arrives (a process that stays up for a script).")
@click.option("-i", "--interactive", is_flag=True,
              help="Ask questions one per line at a prompt, models loaded once ('question | choice A | "
                   "choice B' for multiple choice; empty line or Ctrl-D quits).")
@click.option("-k", "--top", "k", default=3, show_default=True, type=click.IntRange(1), help="Clips retrieved.")
@click.option("--llm", default=None, help="Causal LM: HF id, folder or .gguf (default: packaged SmolLM2-135M).")
@click.option("--lexical-weight", type=click.FloatRange(0, 1), default=None, help="BM25 share in the clip score.")
@click.option("--max-new-tokens", default=48, show_default=True, type=click.IntRange(1))
@click.option("--context-tokens", default=480, show_default=True, type=click.IntRange(32),
              help="Tokens of the retrieved clips the LLM reads (their sentences closest to the question).")
@click.option("--retrieve-only", is_flag=True, help="Only list the clips that would be given to the LLM.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per question).")
@click.option("--show-clips", is_flag=True, help="Print the retrieved clips' texts too.")
@memory_options
def video_qa(video: Path, question: tuple[str, ...], choices: tuple[str, ...], questions_file: Path | None,
             interactive: bool, k: int, llm: str | None, lexical_weight: float | None, max_new_tokens: int, context_tokens: int,
             retrieve_only: bool, as_json: bool, show_clips: bool, no_progress: bool, **opts: Any) -> None:
    """Answer QUESTION about VIDEO from its most relevant clips (indexing it first when needed).

    The top-k clips (dense + BM25 over their texts) go to the LLM, which answers from them alone;
    every answer lists the clips (start-end) it came from.

    \b
    Examples:
      longapps video-qa talk.mp4 "What did the speaker say about BRCA1?"
      longapps video-qa talk.mp4 "Which gene was discussed first?" --choices BRCA1 TP53 APC MLH1
      longapps video-qa talk.mp4 --questions qs.jsonl -k 5
      longapps video-qa talk.mp4 -i          # a prompt: each question answered in seconds
    """
    friendly_errors(_qa)(video, question, choices, questions_file, interactive, k, llm, lexical_weight, max_new_tokens,
                         context_tokens, retrieve_only, as_json, show_clips, no_progress, opts)


def parse_question(words: tuple[str, ...], choices: tuple[str, ...]) -> tuple[str, list[str] | None]:
    """QUESTION [--choices A B C D]: click gives '--choices A' as the option and B C D as extra
    arguments after the question; put them back together."""
    if not words:
        return "", list(choices) or None
    if len(words) > 1 and not choices:
        raise LongappsError("quote the question (one argument), e.g. longapps video-qa v.mp4 \"Who spoke first?\"")
    return words[0], (list(choices) + list(words[1:])) if choices else None


def read_questions(path: Path) -> list[tuple[str, list[str] | None, dict]]:
    """(question, choices, the whole record) per line of a JSONL file."""
    if not path.is_file():
        raise LongappsError(f"questions file not found: {path}")
    out = list(parse_question_lines(path.read_text(encoding="utf-8", errors="replace").splitlines(), str(path)))
    if not out:
        raise LongappsError(f"{path}: no questions")
    return out


def parse_question_lines(lines: Iterable[str], source: str) -> Iterator[tuple[str, list[str] | None, dict]]:
    """(question, choices, the whole record) per JSONL line, lazily (stdin is answered line by line)."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            q = rec["question"] if isinstance(rec, dict) else None
        except (ValueError, KeyError):
            q = None
        if not isinstance(q, str) or not q.strip():
            raise LongappsError(f"{source}:{n}: expected a JSON object with a \"question\" string")
        ch = rec.get("choices")
        if ch is not None and (not isinstance(ch, list) or not all(isinstance(c, str) for c in ch) or not ch):
            raise LongappsError(f"{source}:{n}: \"choices\" must be a non-empty list of strings")
        yield q, ch, rec


def prompt_questions() -> Iterator[tuple[str, list[str] | None, dict]]:
    """Questions typed at a prompt: 'question' or 'question | choice | choice ...'; empty line / Ctrl-D ends."""
    while True:
        try:
            line = input("question> ")
        except EOFError:
            return
        if not line.strip():
            return
        parts = [p.strip() for p in line.split("|")]
        choices = [c for c in parts[1:] if c]
        yield parts[0], (choices or None), {}


def _print_answer(ans: Any, show_clips: bool) -> None:
    click.echo(ans.answer)
    if ans.choices:
        click.echo(click.style("choice scores: ", dim=True) + ", ".join(
            f"{c} {s:.3f}" for c, s in zip(ans.choices, ans.choice_scores or [])))
    if ans.clips:
        click.echo(click.style("from clips: ", dim=True) + ", ".join(f"{c.label} ({c.score:.2f})" for c in ans.clips))
    if show_clips:
        for c in ans.clips:
            click.echo(click.style(f"[{c.label}]", bold=True))
            click.echo(c.text)


def _qa(video, question, choices, questions_file, interactive, k, llm, lexical_weight, max_new_tokens, context_tokens,
        retrieve_only, as_json, show_clips, no_progress, opts) -> None:
    from longapps.pipelines.video_qa import VideoQA

    q, ch = parse_question(question, choices)
    batch: Iterable[tuple[str, list[str] | None, dict]]
    if sum(bool(x) for x in (q, questions_file is not None, interactive)) > 1:
        raise LongappsError("give one of a QUESTION, --questions FILE or --interactive")
    if interactive:
        batch = prompt_questions()
    elif questions_file is not None and str(questions_file) == "-":
        batch = parse_question_lines(sys.stdin, "stdin")
    elif questions_file is not None:
        batch = read_questions(questions_file)
    elif not q.strip():
        raise LongappsError("no question given (usage: longapps video-qa VIDEO \"question\")")
    else:
        batch = [(q, ch, {})]
    extra: dict[str, Any] = {"k": k, "llm": llm, "max_new_tokens": max_new_tokens, "context_tokens": context_tokens}
    if lexical_weight is not None:
        extra["lexical_weight"] = lexical_weight
    cfg = make_config(**opts, **extra)
    qa = VideoQA(video, cfg, progress=show_progress(no_progress))
    res = qa.indexed
    if not res.cached:
        click.echo(f"note: {video} was not indexed yet: indexed it ({len(res.memory.clips)} clips)", err=True)
    for note in res.notes:
        if not res.cached:
            click.echo(f"note: {note}", err=True)
    if interactive:
        qa.warm(llm=not retrieve_only)
    for qi, chi, rec in batch:
        if retrieve_only:
            used = qa.retrieve(qi)
            if as_json or questions_file is not None:
                click.echo(json.dumps({**rec, "question": qi, "clips": [u.to_dict() for u in used]}))
            else:
                for u in used:
                    click.echo(f"{u.label}  {u.score:.3f}  {u.text[:120]!r}")
            continue
        try:
            ans = qa.ask(qi, chi)
        except LongappsError as err:
            if not interactive:
                raise
            click.echo(f"error: {err}", err=True)
            continue
        if as_json or questions_file is not None:
            click.echo(json.dumps({**rec, **ans.to_dict()}), nl=True)
            sys.stdout.flush()
        else:
            _print_answer(ans, show_clips)
            if interactive:
                click.echo(click.style(f"({ans.seconds.get('total', 0.0):.1f} s)", dim=True))

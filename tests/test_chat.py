"""`longapps chat` (issue 13): the bounded KV cache and its policies against a from-scratch reference, the
dialogue pipeline (say / choose / stream / Ctrl-C / reset), the replay format and the CLI, on tiny random
models of four families (Llama, Qwen2, Mistral, Gemma) with a char tokenizer."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from chat_models import char_tokenizer, fresh_logprobs, tiny_lm  # noqa: E402

from longapps.adapters.turns import parse_turn, read_turns  # noqa: E402
from longapps.cli import main  # noqa: E402
from longapps.models.causal_lm import cache_kwarg  # noqa: E402
from longapps.models.bounded_cache import (BoundedCache, ContextFullError, MemoryConfig, Rope,  # noqa: E402
                                           bounded_cache_for)
from longapps.pipelines.dialogue import ChatFormat, StreamingChat  # noqa: E402
from longapps.resources import LongappsError  # noqa: E402

FAMILIES = ["llama", "qwen2", "mistral", "gemma"]
LINES = ["Hello there, how are you today?", "My locker code is 4417, remember it.", "What is the weather like?",
         "Tell me about rivers in Europe.", "I like green tea and long walks.", "Which number did I give you?"]


def _chat(lm, **kw) -> StreamingChat:
    kw.setdefault("max_new_tokens", 12)
    return StreamingChat(lm, **kw)


def _consistent(chat: StreamingChat) -> None:
    n = chat.cache.length
    assert n <= chat.cache.capacity
    assert all(layer.get_seq_length() == n for layer in chat.cache.layers)


# -- the cache against a from-scratch reference ---------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("memory", ["sirllm", "streaming"])
def test_eviction_matches_recompute_from_scratch(family, memory):
    """One layer: a layer's keys/values depend only on (token, position), so after any number of evictions
    the cached model must give exactly the log-probs of a fresh forward over the kept tokens."""
    lm = tiny_lm(family, layers=1)
    chat = _chat(lm, memory=memory, cache_size=64, sinks=4, recent=16, max_new_tokens=6)
    for line in LINES * 2:
        chat.say(line)
    assert chat.cache.evictions >= 3 and chat.cache.seen > 3 * chat.cache.capacity
    _consistent(chat)
    ref = fresh_logprobs(lm.model, chat.cache.ids)
    assert torch.allclose(chat._last_logp, ref, atol=2e-5), (chat._last_logp - ref).abs().max()


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_first_layer_keys_match_recompute_multi_layer(family):
    """Several layers: layer 0's cached keys and values equal those of a fresh forward over the kept tokens
    (positions re-rotated correctly), the deeper layers legitimately remember evicted context."""
    from transformers import DynamicCache

    lm = tiny_lm(family, layers=3)
    chat = _chat(lm, cache_size=64, sinks=4, recent=8, max_new_tokens=6)
    for line in LINES[:5]:
        chat.say(line)
    assert chat.cache.evictions >= 2
    ref = DynamicCache(config=lm.model.config)
    with torch.no_grad():
        lm.model(input_ids=chat.cache.ids[None], **{cache_kwarg(lm.model): ref}, use_cache=True)
    layer = chat.cache.layers[0]
    assert torch.allclose(layer.keys, ref.layers[0].keys, atol=1e-5)
    assert torch.allclose(layer.values, ref.layers[0].values, atol=1e-6)


@pytest.mark.parametrize("memory", ["sirllm", "streaming", "full"])
def test_no_eviction_equals_plain_forward(memory):
    """Before the cache fills, every policy is exactly the plain model over the whole conversation."""
    lm = tiny_lm("qwen2", layers=2)
    chat = _chat(lm, memory=memory, cache_size=1024)
    for line in LINES[:3]:
        chat.say(line)
    assert chat.cache.evicted == 0
    assert chat.cache.ids.tolist() == lm.tokenizer(
        lm.tokenizer.decode(chat.cache.ids, skip_special_tokens=False), add_special_tokens=False)["input_ids"]
    assert torch.allclose(chat._last_logp, fresh_logprobs(lm.model, chat.cache.ids), atol=2e-5)


def _filled_cache(memory: str, n: int = 40, **kw) -> BoundedCache:
    inv = 1.0 / (10000 ** (torch.arange(0, 8, 2, dtype=torch.float64) / 8))
    cfg = MemoryConfig(memory, **kw)
    c = BoundedCache(2, cfg, Rope(inv, 8), 4096)
    k = torch.randn(1, 2, n, 8)
    for layer in c.layers:
        layer.update(k, k.clone())
    c.record(list(range(100, 100 + n)), torch.arange(n, dtype=torch.float32) % 7)
    return c


def test_streaming_keeps_sinks_and_most_recent():
    c = _filled_cache("streaming", cache_size=48, sinks=4)
    c.make_room(20)
    kept = c.abs_pos.tolist()
    assert len(kept) <= 28 and kept[:4] == [0, 1, 2, 3]
    assert kept[4:] == list(range(40 - (len(kept) - 4), 40))  # one contiguous recent window


def test_sirllm_keeps_sinks_top_scores_and_recent_in_order():
    c = _filled_cache("sirllm", cache_size=48, sinks=2, recent=3)
    scores = c.scores.clone()
    c.make_room(24)
    kept = c.abs_pos.tolist()
    assert kept == sorted(kept) and kept[:2] == [0, 1] and kept[-3:] == [37, 38, 39]
    middle = kept[2:-3]
    assert c.stats().key_tokens == len(middle)
    lowest_kept = min(float(scores[i]) for i in middle)
    dropped = [i for i in range(2, 37) if i not in middle]
    assert all(float(scores[i]) <= lowest_kept for i in dropped)  # top-k by score


def test_decay_multiplies_scores_each_turn():
    c = _filled_cache("sirllm", cache_size=64)
    before = c.scores.clone()
    c.decay()
    assert torch.allclose(c.scores, before * 0.9)


def test_keys_rerotated_from_pre_rope_copy_without_drift():
    """Many evictions in bf16 never accumulate rounding: keys equal one rotation of the float32 original."""
    torch.manual_seed(0)
    inv = 1.0 / (10000 ** (torch.arange(0, 8, 2, dtype=torch.float64) / 8))
    rope = Rope(inv, 8)
    c = BoundedCache(1, MemoryConfig("streaming", cache_size=32, sinks=2), rope, 4096)
    raw_all = torch.randn(1, 1, 400, 8)
    for start in range(0, 400, 4):
        c.make_room(4)
        pos = torch.arange(c.length, c.length + 4)
        cos, sin = rope.cos_sin(pos, "cpu")
        c.layers[0].update(rope.rotate(raw_all[:, :, start:start + 4], cos, sin).bfloat16(),
                           torch.zeros(1, 1, 4, 8, dtype=torch.bfloat16))
        c.record([0] * 4)
    assert c.evictions > 20
    cos, sin = rope.cos_sin(torch.arange(c.length), "cpu")
    expect = rope.rotate(raw_all[:, :, c.abs_pos], cos, sin)
    got = c.layers[0].keys.float()
    assert (got - expect).abs().max() < 0.02  # one bf16 rounding, not hundreds


def test_full_policy_stops_at_the_context_with_a_clear_error():
    lm = tiny_lm("llama", layers=1, context=160)
    chat = _chat(lm, memory="full")
    with pytest.raises(ContextFullError, match="context .160 tokens. with --memory full"):
        for line in LINES * 5:
            chat.say(line)
    _consistent(chat)


def test_cache_size_not_above_sinks_is_refused():
    with pytest.raises(LongappsError, match="must be larger than --sinks"):
        MemoryConfig("sirllm", cache_size=4, sinks=4).validate()
    with pytest.raises(LongappsError, match="must be larger than --sinks"):
        StreamingChat(tiny_lm(), cache_size=2, sinks=8)


def test_model_without_rope_is_refused_for_bounded_policies():
    from transformers import GPT2Config, GPT2LMHeadModel

    m = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=64))
    with pytest.raises(LongappsError, match="rotary position embeddings"):
        bounded_cache_for(m, MemoryConfig("sirllm", 32, 4, 4), 64)
    assert bounded_cache_for(m, MemoryConfig("full"), 64).capacity == 64


# -- the dialogue pipeline ------------------------------------------------------------------------------
def test_turn_pieces_equal_the_template_over_the_whole_conversation():
    tok = char_tokenizer()
    fmt = ChatFormat(tok)
    msgs, text = [], ""
    for i, line in enumerate(LINES[:3]):
        text += (fmt.reply_end if i else "") + fmt.turn_text(line, first=i == 0)
        msgs.append({"role": "user", "content": line})
        assert text == tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        text += f"reply {i}"
        msgs.append({"role": "assistant", "content": f"reply {i}"})


def test_say_streams_pieces_and_counts():
    lm = tiny_lm(mute_stops=True)
    chat = _chat(lm, max_new_tokens=7)
    pieces: list[str] = []
    r = chat.say("Hi", on_token=pieces.append)
    assert r.tokens == 7 and "".join(pieces).strip() == r.text and r.cache_tokens == chat.cache.length
    assert r.to_dict(1)["turn"] == 1 and "choice" not in r.to_dict(1)
    s = chat.stats()
    assert s.turns == 1 and s.reply_tokens == 7 and s.cache.tokens == chat.cache.length


def test_choose_picks_highest_log_likelihood_and_feeds_it():
    lm = tiny_lm(layers=2)
    chat = _chat(lm)
    chat.say("Hello")
    before = chat.cache.ids.tolist()
    choices = ["abc", "xyz", "hello world"]
    r = chat.choose("Pick one", choices)
    assert r.choice == max(range(3), key=lambda i: r.scores[i]) and r.text == choices[r.choice]
    # the log-likelihoods are those of a plain forward over the same tokens
    prompt = chat.cache.ids.tolist()[:-len(lm.tokenizer(choices[r.choice], add_special_tokens=False)["input_ids"])]
    assert prompt[:len(before)] == before
    for c, ll in zip(choices, r.scores):
        cid = lm.tokenizer(c, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(lm.model(input_ids=torch.tensor([prompt + cid])).logits[0].float(), -1)
        ref = sum(float(lp[len(prompt) - 1 + j, t]) for j, t in enumerate(cid))
        assert abs(ll - ref) < 1e-3
    _consistent(chat)
    assert torch.allclose(chat._last_logp, fresh_logprobs(lm.model, chat.cache.ids), atol=2e-5)


def test_long_turn_is_chunked_within_the_bounded_cache():
    """A 100k-token turn runs in chunks; the cache never holds more than its size."""
    lm = tiny_lm("llama", layers=1)
    chat = _chat(lm, memory="streaming", cache_size=2048, sinks=4, max_new_tokens=4, chunk_size=1000)
    peak = []
    orig = chat.cache.record

    def spy(ids, scores=None):
        orig(ids, scores)
        peak.append(chat.cache.length)
    chat.cache.record = spy
    text = ("the quick brown fox jumps over the lazy dog. " * 2300)[:100_000]
    r = chat.say(text)
    assert chat.cache.seen >= 100_000 and max(peak) <= 2048 and r.cache_tokens <= 2048
    _consistent(chat)
    assert torch.allclose(chat._last_logp, fresh_logprobs(lm.model, chat.cache.ids), atol=2e-5)


def test_empty_turn_is_a_clear_error():
    chat = _chat(tiny_lm())
    for bad in ("", "   \n"):
        with pytest.raises(LongappsError, match="empty turn"):
            chat.say(bad)
    with pytest.raises(LongappsError, match="empty turn"):
        chat.choose("", ["a"])
    with pytest.raises(LongappsError, match="choices"):
        chat.choose("x", [])


def test_interrupt_mid_reply_keeps_the_cache_consistent():
    lm = tiny_lm(layers=1, mute_stops=True)
    chat = _chat(lm, cache_size=96, recent=8, max_new_tokens=40)
    chat.say("First")
    seen = []

    def stop_after_three(piece):
        seen.append(piece)
        if len(seen) == 3:
            raise KeyboardInterrupt
    r = chat.say("Second", on_token=stop_after_three)
    assert r.interrupted and r.tokens == 3
    _consistent(chat)
    chat.say("Third")  # the conversation goes on
    _consistent(chat)
    assert torch.allclose(chat._last_logp, fresh_logprobs(lm.model, chat.cache.ids), atol=2e-5)


def test_interrupt_inside_a_forward_rolls_back(monkeypatch):
    lm = tiny_lm(layers=2, mute_stops=True)
    chat = _chat(lm, max_new_tokens=20)
    chat.say("Hello")
    n = chat.cache.length
    calls = {"n": 0}
    real = lm.model.model.layers[1].forward

    def boom(*a, **k):  # Ctrl-C after layer 0 already stored the new token
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(lm.model.model.layers[1], "forward", boom)
    r = chat.say("Again")
    assert r.interrupted and chat.cache.length > n
    _consistent(chat)


def test_reset_forgets_everything():
    lm = tiny_lm(layers=1)
    chat = _chat(lm, cache_size=64, recent=8)
    a = chat.say("Hello there").text
    for line in LINES:
        chat.say(line)
    chat.reset()
    assert chat.cache.length == 0 and chat.stats().turns == 0 and chat.cache.seen == 0
    assert chat.say("Hello there").text == a


def test_model_without_chat_template_uses_plain_format_with_a_note():
    lm = tiny_lm(template=False)
    chat = _chat(lm)
    assert any("no chat template" in n for n in chat.notes)
    chat.say("Hi")
    assert lm.tokenizer.decode(chat.cache.ids).startswith("User: Hi\nAssistant:")


# -- replay format ---------------------------------------------------------------------------------------
def test_replay_format(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text('{"user": "hi"}\n\n{"user": "pick", "choices": ["a", "b"]}\n')
    turns = read_turns(f)
    assert [(t.user, t.choices, t.line) for t in turns] == [("hi", None, 1), ("pick", ("a", "b"), 3)]
    for line, msg in [('{"user": "x"', "not valid JSON"), ('["x"]', "expected a JSON object"),
                      ('{"text": "x"}', "unknown key"), ('{"user": 3}', "must be a string"),
                      ('{"user": " "}', "empty turn"), ('{"user": "x", "choices": []}', "non-empty list"),
                      ('{"user": "x", "choices": ["a", ""]}', "non-empty list")]:
        with pytest.raises(LongappsError, match=msg):
            parse_turn(line, "f:1")
    f.write_text('{"user": "ok"}\n{"user": "broken"\n')
    with pytest.raises(LongappsError, match=r"t.jsonl:2: not valid JSON"):
        read_turns(f)
    with pytest.raises(LongappsError, match="not found"):
        read_turns(tmp_path / "missing.jsonl")


# -- CLI -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-chat-llm")
    lm = tiny_lm("llama", layers=2, mute_stops=True)
    lm.model.save_pretrained(d, safe_serialization=True)
    lm.tokenizer.save_pretrained(d)
    return d


def _run(args, input=None):
    return CliRunner().invoke(main, args, input=input)


def test_cli_replay_json(lm_dir, tmp_path):
    f = tmp_path / "turns.jsonl"
    f.write_text('{"user": "Hello"}\n{"user": "Which?", "choices": ["one", "two"]}\n{"user": "Bye"}\n')
    r = _run(["chat", "--llm", str(lm_dir), "--replay", str(f), "--json", "--max-new-tokens", "5",
              "--cache-size", "64", "--recent", "8", "--stats"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["turn"] for x in rows] == [1, 2, 3]
    assert rows[1]["choice"] in (0, 1) and rows[1]["reply"] in ("one", "two") and "choice" not in rows[0]
    assert all(set(x) >= {"reply", "cache_tokens", "ms"} and x["cache_tokens"] <= 64 for x in rows)
    assert '"stats"' in r.stderr


@pytest.mark.parametrize("args,content,msg", [
    (["--cache-size", "4", "--sinks", "4"], '{"user": "x"}\n', "must be larger than --sinks"),
    ([], '{"user": "x"}\n{oops}\n', ":2: not valid JSON"),
    ([], '{"user": ""}\n', ":1: empty turn"),
    (["--memory", "full"], '{"user": "' + "long " * 900 + '"}\n', "turn 1 (line 1): the conversation filled"),
])
def test_cli_bad_input_one_line_exit_2(lm_dir, tmp_path, args, content, msg):
    f = tmp_path / "t.jsonl"
    f.write_text(content)
    r = _run(["chat", "--llm", str(lm_dir), "--replay", str(f), "--json", *args])
    assert r.exit_code == 2 and msg in r.stderr and r.stderr.count("\n") <= 2, r.output
    assert r.stdout == ""


def test_cli_json_needs_replay(lm_dir):
    r = _run(["chat", "--llm", str(lm_dir), "--json"])
    assert r.exit_code == 2 and "--json needs --replay" in r.stderr


def test_cli_interactive_commands(lm_dir):
    r = _run(["chat", "--llm", str(lm_dir), "--max-new-tokens", "4"],
             input="Hello\n\n/stats\n/reset\n/stats\n/nope\nAgain\n/quit\n")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("bot> ") == 2
    assert "empty turn" in r.stderr and "unknown command /nope" in r.stderr
    assert "stats: turns 1" in r.stderr and "stats: turns 0" in r.stderr and "conversation reset" in r.stderr


def test_cli_ctrl_c_mid_reply_returns_to_the_prompt(lm_dir):
    """A real process: SIGINT while the reply streams -> a clear line, and the chat goes on."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", LONGAPPS_THREADS="1")
    # a terminal delivers Ctrl-C as SIGINT; a test run started in the background inherits SIGINT *ignored*
    # (POSIX shells do that to background jobs) and Python then installs no KeyboardInterrupt handler:
    # give the child the terminal's default disposition
    p = subprocess.Popen([sys.executable, "-m", "longapps.cli", "chat", "--llm", str(lm_dir),
                          "--max-new-tokens", "100000", "--cache-size", "256", "--recent", "16"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        p.stdin.write("Tell me a long story\n")
        p.stdin.flush()
        got = ""
        deadline = time.time() + 60
        while len(got) < 40 and time.time() < deadline:  # the reply is streaming
            got += os.read(p.stdout.fileno(), 64).decode(errors="replace")
        assert got.startswith("bot> ")
        p.send_signal(signal.SIGINT)
        time.sleep(0.5)
        out, err = p.communicate("/stats\n/quit\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "reply interrupted; the conversation goes on" in err and "stats: turns 1" in err

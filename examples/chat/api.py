"""StreamingChat from Python: a bounded-memory chat with the packaged SmolLM2 (offline).

    .venv/bin/python examples/chat/api.py
"""
from longapps.pipelines.dialogue import StreamingChat

chat = StreamingChat(memory="sirllm", cache_size=256, max_new_tokens=24)
chat.say("Hi! My locker code is 4417. Please remember it.")
for question in ["What is the capital of France?", "Name a famous painter.", "What is a good breakfast?"]:
    print("you>", question)
    print("bot>", chat.say(question, on_token=None).text)
pick = chat.choose("What is my locker code?", ["4417", "1234", "9021"])
print("locker code ->", pick.text, "(choice", pick.choice, ")")
s = chat.stats()
print(f"cache {s.cache.tokens}/{s.cache.capacity}: {s.cache.sinks} sinks, {s.cache.key_tokens} key tokens, "
      f"{s.cache.recent} recent; {s.cache.evicted} evicted")

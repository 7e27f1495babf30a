"""`chatlm serve` through the official `openai` Python client, on the real default model."""

import concurrent.futures
import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import API_KEY, Server, binary

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def chat(client, **kw):
    kw.setdefault("model", "chatlm")
    kw.setdefault("messages", QUESTION)
    return client.chat.completions.create(**kw)


def raw(server, path, body=None, key=API_KEY, method=None):
    """(status, parsed JSON or text) of a request made without the openai client."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method=method or ("POST" if data is not None else "GET"))
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def test_greedy_chat_equals_chatlm_generate(client, model_file):
    r = chat(client, temperature=0, max_tokens=24)
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(QUESTION, f)
    out = subprocess.run([binary(), "generate", "--model", model_file, "--messages", f.name, "--max-new-tokens", "24",
                          "--threads", "2", "--json"], capture_output=True, text=True, check=True)
    expected = json.loads(out.stdout)
    assert choice.message.content == expected["text"]
    assert r.usage.prompt_tokens == expected["prompt_tokens"]
    assert r.usage.completion_tokens == expected["completion_tokens"]
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")


def test_streaming_chat_sends_the_same_text(client):
    whole = chat(client, temperature=0, max_tokens=20).choices[0].message.content
    chunks = list(chat(client, temperature=0, max_tokens=20, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_completions_and_max_tokens(client):
    r = client.completions.create(model="chatlm", prompt="The capital of France is", max_tokens=5, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="chatlm", prompt="The capital of France is", max_tokens=5, temperature=0, stream=True))
    assert streamed == r.choices[0].text


def test_stop_strings_cut_the_answer(client):
    whole = chat(client, temperature=0, max_tokens=30).choices[0].message.content
    words = whole.split()
    assert len(words) >= 4, whole
    stop = words[2]
    r = chat(client, temperature=0, max_tokens=30, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == whole[: whole.index(stop)]


def test_seed_reproduces_a_sampled_answer(client):
    a = chat(client, temperature=1.0, seed=42, max_tokens=16).choices[0].message.content
    b = chat(client, temperature=1.0, seed=42, max_tokens=16).choices[0].message.content
    assert a == b
    others = {chat(client, temperature=1.0, seed=s, max_tokens=16).choices[0].message.content for s in (1, 2, 3)}
    assert len(others | {a}) > 1


def test_n_choices(client):
    r = chat(client, temperature=1.0, seed=7, n=3, max_tokens=8)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert 3 <= r.usage.completion_tokens <= 3 * 8
    # Choice j samples with seed + j: the same request again gives the same three answers.
    again = chat(client, temperature=1.0, seed=7, n=3, max_tokens=8)
    assert len({c.message.content for c in r.choices}) > 1 or r.usage.completion_tokens == 3
    assert [c.index for c in again.choices] == [0, 1, 2]


def test_logprobs(client):
    r = chat(client, temperature=0, max_tokens=6, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for step in content:
        assert step.logprob <= 0 and len(step.top_logprobs) == 3
        # Greedy: the chosen token is the most likely one.
        assert step.token == step.top_logprobs[0].token
        assert abs(step.logprob - step.top_logprobs[0].logprob) < 1e-5


@pytest.mark.parametrize("kw,param", [
    ({"temperature": -1}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"n": 0}, "n"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"frequency_penalty": 3}, "frequency_penalty"),
])
def test_out_of_range_values_are_400(client, kw, param):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, **kw)
    assert e.value.status_code == 400
    assert e.value.body["param"] == param and e.value.body["message"]


def test_bad_bodies_get_openai_errors(server):
    status, body = raw(server, "/v1/chat/completions", b"{not json")
    assert status == 400 and "JSON" in body["error"]["message"] and body["error"]["type"] == "invalid_request_error"
    status, body = raw(server, "/v1/chat/completions", b"x" * (5 << 20))
    assert status == 413 and body["error"]["code"] == "request_too_large"
    long = [{"role": "user", "content": "hello " * 3000}]
    status, body = raw(server, "/v1/chat/completions", {"model": "m", "messages": long})
    assert status == 400 and "--ctx-size" in body["error"]["message"]
    status, body = raw(server, "/v1/nothing", {})
    assert status == 404 and body["error"]["message"]
    status, body = raw(server, "/v1/chat/completions", {"messages": [{"content": "no role"}]})
    assert status == 400 and body["error"]["param"] == "messages[0]"


def test_api_key(server):
    with pytest.raises(openai.AuthenticationError):
        chat(server.client(api_key="wrong"))
    status, body = raw(server, "/v1/models", key=None)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert raw(server, "/health", key=None) == (200, {"status": "ok"})
    models = server.client().models.list()
    assert len(models.data) == 1


def test_tokenize_roundtrip(server):
    status, body = raw(server, "/tokenize", {"content": "Hello, world!"})
    assert status == 200 and body["tokens"]
    status, back = raw(server, "/detokenize", {"tokens": body["tokens"]})
    assert (status, back["content"]) == (200, "Hello, world!")


def metric(server, name):
    _, text = raw(server, "/metrics")
    for line in text.splitlines():
        if line.startswith(f"chatlm_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name} in {text}")


def test_disconnect_frees_the_slot(server):
    stream = chat(server.client(), temperature=0, max_tokens=1500, stream=True,
                  messages=[{"role": "user", "content": "Write a very long story about a dragon."}])
    before = metric(server, "generated_tokens_total")
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    deadline = time.time() + 10
    while metric(server, "requests_running") > 0 and time.time() < deadline:
        time.sleep(0.1)
    assert metric(server, "requests_running") == 0
    assert metric(server, "generated_tokens_total") - before < 1000


def test_sixteen_concurrent_clients(server):
    client = server.client()

    def one(i):
        r = chat(client, temperature=0.7, seed=i, max_tokens=12,
                 messages=[{"role": "user", "content": f"Say a number bigger than {i}."}])
        return r.choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(16)))
    assert len(answers) == 16 and all(isinstance(a, str) for a in answers)


def test_queue_full_is_503():
    s = Server("--parallel", "1", "--queue", "1", "--ctx-size", "1024")
    try:
        client = s.client()

        def one(_):
            try:
                chat(client, temperature=0, max_tokens=64)
                return 200
            except openai.APIStatusError as e:
                return e.status_code

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(one, range(6)))
        assert 503 in codes and 200 in codes, codes
    finally:
        s.stop()


def test_json_mode_answers_parse(client):
    for prompt in ('Give me a JSON object with one key "color" whose value is a color.',
                   "Reply with a JSON object describing a cat: its name and age."):
        r = chat(client, temperature=0, max_tokens=200, response_format={"type": "json_object"},
                 messages=[{"role": "user", "content": prompt}])
        # The answer ends where the object closes, not at the token limit.
        assert r.choices[0].finish_reason == "stop"
        assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_json_schema_answers_validate(client):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = chat(client, temperature=0, max_tokens=120,
             response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
             messages=[{"role": "user", "content": "Invent a person with a name and an age."}])
    value = json.loads(r.choices[0].message.content)
    assert set(value) == {"name", "age"}
    assert isinstance(value["name"], str) and isinstance(value["age"], int)
    # Streamed, the pieces join into the same valid JSON.
    text = "".join(c.choices[0].delta.content or "" for c in chat(
        client, temperature=0, max_tokens=120, stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
        messages=[{"role": "user", "content": "Invent a person with a name and an age."}]) if c.choices)
    assert json.loads(text) == value


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_forced_tool_calls_come_back_parsed(client):
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        r = chat(client, temperature=0, max_tokens=80, tools=TOOLS, tool_choice=choice,
                 messages=[{"role": "user", "content": "What is the weather in Paris?"}])
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", c
        call = c.message.tool_calls[0]
        assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
        assert isinstance(json.loads(call.function.arguments)["city"], str)
    # The same through a stream: one delta carries the calls.
    chunks = list(chat(client, temperature=0, max_tokens=80, tools=TOOLS, tool_choice="required", stream=True,
                       messages=[{"role": "user", "content": "What is the weather in Paris?"}]))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "get_weather"
    # A tool result goes back through the template.
    follow = chat(client, temperature=0, max_tokens=16, tools=TOOLS, messages=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"}])
    assert follow.choices[0].message.content is not None


def test_bad_constraints_are_400(client):
    with pytest.raises(openai.BadRequestError):
        chat(client, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}})
    with pytest.raises(openai.BadRequestError):
        chat(client, response_format={"type": "json_schema", "json_schema": {"name": "x"}})
    with pytest.raises(openai.BadRequestError):
        chat(client, response_format={"type": "xml"})

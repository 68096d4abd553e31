"""herd serve against the official `openai` Python client.

Starts `herd serve` (embedded random-weight model) on a free port of
127.0.0.1 and checks protocol behaviour: the model writes gibberish, so the
tests compare paths that must agree (stream vs whole, one client vs 32, same
seed twice) rather than content.

    python3 tests/server/test_openai_api.py [path/to/herd]   (default target/debug/herd)
"""

import json
import os
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

import openai

import herd_server

HERD = os.environ.get("HERD_BIN", "target/debug/herd")
KEY = "test-key"
MODEL = "herd-embedded"
SERVER = None
BASE = None


def setUpModule():
    global SERVER, BASE
    SERVER, BASE = herd_server.start(HERD, ["--api-key", KEY, "--kv-cache-memory", "64MiB"])


def tearDownModule():
    SERVER.terminate()
    SERVER.wait(timeout=10)


def client(key=KEY):
    return openai.OpenAI(base_url=BASE + "/v1", api_key=key, max_retries=0, timeout=120)


def chat(**kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("messages", [{"role": "user", "content": "Hello, who are you?"}])
    return client().chat.completions.create(**kw)


def stream_text(**kw):
    """Streams a chat and returns (text per choice, finish per choice, chunks)."""
    chunks = list(chat(stream=True, **kw))
    texts, finishes = {}, {}
    for c in chunks:
        for ch in c.choices:
            texts.setdefault(ch.index, "")
            texts[ch.index] += ch.delta.content or ""
            if ch.finish_reason:
                finishes[ch.index] = ch.finish_reason
    return texts, finishes, chunks


def http(method, path, body=None, key=KEY, raw=None):
    """A plain HTTP request; returns (status, parsed JSON or text)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            status, text = res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def metrics():
    _, text = http("GET", "/metrics")
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"enum": ["Oslo", "Rome"]}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone",
        "parameters": {"type": "object", "properties": {"tz": {"enum": ["UTC", "CET"]}},
                       "required": ["tz"], "additionalProperties": False},
    },
}
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        # `pattern` is outside herd-structured's subset: the call is then
        # constrained to any-object arguments instead of refused.
        "parameters": {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}}},
    },
}


def check_weather_args(test, arguments):
    args = json.loads(arguments)
    test.assertEqual(set(args), {"city", "unit"})
    test.assertIn(args["city"], ("Oslo", "Rome"))
    test.assertIn(args["unit"], ("celsius", "fahrenheit"))


class Chat(unittest.TestCase):
    def test_models_and_health(self):
        models = client().models.list()
        self.assertEqual([m.id for m in models.data], [MODEL])
        self.assertEqual(http("GET", "/health", key=None), (200, {"status": "ok"}))

    def test_plain_and_streaming_agree(self):
        whole = chat(temperature=0, max_tokens=24)
        choice = whole.choices[0]
        self.assertEqual(choice.message.role, "assistant")
        self.assertIn(choice.finish_reason, ("stop", "length"))
        usage = whole.usage
        self.assertGreater(usage.prompt_tokens, 5)
        self.assertEqual(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens)
        self.assertLessEqual(usage.completion_tokens, 24)

        texts, finishes, chunks = stream_text(
            temperature=0, max_tokens=24, stream_options={"include_usage": True}
        )
        self.assertEqual(texts[0], choice.message.content)
        self.assertEqual(finishes[0], choice.finish_reason)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens, usage.completion_tokens)
        self.assertEqual(chunks[-1].usage.prompt_tokens, usage.prompt_tokens)

    def test_system_and_history_change_the_prompt(self):
        short = chat(max_tokens=1).usage.prompt_tokens
        messages = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "Hello, who are you?"}]},
        ]
        self.assertGreater(chat(messages=messages, max_tokens=1).usage.prompt_tokens, short)

    def test_n_and_seeds(self):
        a = chat(n=3, seed=11, temperature=1.0, max_tokens=16)
        self.assertEqual([c.index for c in a.choices], [0, 1, 2])
        b = chat(n=3, seed=11, temperature=1.0, max_tokens=16)
        self.assertEqual([c.message.content for c in a.choices], [c.message.content for c in b.choices])
        texts, finishes, _ = stream_text(n=3, seed=11, temperature=1.0, max_tokens=16)
        self.assertEqual([texts[i] for i in range(3)], [c.message.content for c in a.choices])
        self.assertEqual(sorted(finishes), [0, 1, 2])
        other = {chat(seed=s, temperature=1.0, max_tokens=16).choices[0].message.content for s in range(4)}
        self.assertGreater(len(other), 1, "different seeds should not all agree")

    def test_logprobs(self):
        r = chat(temperature=0, max_tokens=12, logprobs=True, top_logprobs=3)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens)
        for entry in content:
            self.assertLessEqual(entry.logprob, 0.0)
            self.assertEqual(len(entry.top_logprobs), 3)
            best = entry.top_logprobs[0].logprob
            self.assertGreaterEqual(best, entry.logprob - 1e-5)  # greedy picks the best
        self.assertEqual(r.choices[0].message.content.encode(), b"".join(bytes(e.bytes) for e in content))
        with self.assertRaises(openai.BadRequestError):
            chat(max_tokens=2, logprobs=True, top_logprobs=21)

    def test_stop_strings(self):
        full = chat(temperature=0, max_tokens=40).choices[0].message.content
        stop = full[8:11]
        cut = full[: full.index(stop)]
        r = chat(temperature=0, max_tokens=40, stop=[stop, "never-appears"])
        self.assertEqual(r.choices[0].message.content, cut)
        self.assertEqual(r.choices[0].finish_reason, "stop")
        texts, finishes, _ = stream_text(temperature=0, max_tokens=40, stop=stop)
        self.assertEqual((texts[0], finishes[0]), (cut, "stop"))

    def test_tools_round_trip(self):
        messages = [{"role": "user", "content": "Weather in Oslo?"}]
        plain = chat(messages=messages, max_tokens=1).usage.prompt_tokens
        r = chat(
            messages=messages,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            temperature=1.0,
            seed=3,
            max_tokens=700,
        )
        self.assertGreater(r.usage.prompt_tokens, plain + 20, "tool definitions are in the prompt")
        choice = r.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        self.assertIsNone(choice.message.content)
        call = choice.message.tool_calls[0]
        self.assertEqual((call.type, call.function.name), ("function", "get_weather"))
        check_weather_args(self, call.function.arguments)

        texts, finishes, chunks = stream_text(
            messages=messages, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=700
        )
        calls = [tc for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or [])]
        self.assertEqual((finishes[0], texts[0]), ("tool_calls", ""))
        self.assertEqual(calls[0].function.name, "get_weather")
        check_weather_args(self, calls[0].function.arguments)

        r = chat(messages=messages, tools=[WEATHER, TIME], tool_choice="required", n=6, seed=1, max_tokens=600)
        for choice in r.choices:
            self.assertEqual(choice.finish_reason, "tool_calls")
            call = choice.message.tool_calls[0]
            self.assertIn(call.function.name, ("get_weather", "get_time"))
            self.assertIsInstance(json.loads(call.function.arguments), dict)
        r = chat(messages=messages, tools=[LOOKUP], tool_choice="required", max_tokens=20)
        self.assertIn(r.choices[0].finish_reason, ("tool_calls", "length"))

        # The call and its result go back into the dialog (ipython role).
        history = messages + [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
                    {"id": "call_2", "type": "function",
                     "function": {"name": "brave_search", "arguments": '{"query": "Oslo weather"}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 3}'},
        ]
        r2 = chat(messages=history, tools=[WEATHER], max_tokens=8)
        self.assertGreater(r2.usage.prompt_tokens, r.usage.prompt_tokens + 10)
        self.assertIn(r2.choices[0].finish_reason, ("stop", "length", "tool_calls"))
        none = chat(messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=1)
        self.assertEqual(none.usage.prompt_tokens, plain, "tool_choice none leaves tools out")


class StructuredOutput(unittest.TestCase):
    SCHEMA = {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "color": {"enum": ["red", "green", "blue"]},
            "count": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        },
        "required": ["ok", "color", "count", "tags"],
        "additionalProperties": False,
    }

    def validate(self, doc):
        self.assertEqual(set(doc), {"ok", "color", "count", "tags"})
        self.assertIsInstance(doc["ok"], bool)
        self.assertIn(doc["color"], ("red", "green", "blue"))
        self.assertIsInstance(doc["count"], int)
        self.assertLessEqual(len(doc["tags"]), 3)
        self.assertTrue(all(isinstance(t, str) and len(t) <= 6 for t in doc["tags"]))

    def test_json_schema_output_parses_and_validates(self):
        fmt = {"type": "json_schema", "json_schema": {"name": "thing", "schema": self.SCHEMA}}
        r = chat(response_format=fmt, n=4, seed=5, max_tokens=900)
        for choice in r.choices:
            self.assertEqual(choice.finish_reason, "stop")
            self.validate(json.loads(choice.message.content))
        texts, finishes, _ = stream_text(response_format=fmt, temperature=0, max_tokens=900)
        self.assertEqual(finishes[0], "stop")
        self.validate(json.loads(texts[0]))

    def test_json_object(self):
        r = chat(response_format={"type": "json_object"}, temperature=0, max_tokens=400)
        text = r.choices[0].message.content
        self.assertTrue(text.lstrip().startswith("{"), text)
        if r.choices[0].finish_reason == "stop":
            self.assertIsInstance(json.loads(text), dict)


class Completions(unittest.TestCase):
    def test_echo_scores_the_prompt(self):
        prompt = "The quick brown fox"
        r = client().completions.create(model=MODEL, prompt=prompt, max_tokens=0, echo=True, logprobs=2)
        choice = r.choices[0]
        self.assertEqual(choice.text, prompt)
        lp = choice.logprobs
        self.assertEqual(len(lp.tokens), r.usage.prompt_tokens)
        self.assertIsNone(lp.token_logprobs[0])
        self.assertTrue(all(x <= 0 for x in lp.token_logprobs[1:]))
        self.assertTrue(all(len(t) <= 2 for t in lp.top_logprobs[1:]))
        self.assertEqual(r.usage.completion_tokens, 0)

    def test_generation_logprobs_and_stream(self):
        c = client()
        r = c.completions.create(model=MODEL, prompt="Once upon", max_tokens=10, temperature=0, logprobs=1)
        choice = r.choices[0]
        self.assertEqual(len(choice.logprobs.tokens), r.usage.completion_tokens)
        self.assertEqual(choice.logprobs.text_offset[0], 0)
        streamed = "".join(
            ch.text
            for chunk in c.completions.create(model=MODEL, prompt="Once upon", max_tokens=10, temperature=0, stream=True)
            for ch in chunk.choices
        )
        self.assertEqual(streamed, choice.text)
        echoed = c.completions.create(model=MODEL, prompt="Once upon", max_tokens=10, temperature=0, echo=True)
        self.assertEqual(echoed.choices[0].text, "Once upon" + choice.text)

    def test_several_prompts_and_token_ids(self):
        r = client().completions.create(model=MODEL, prompt=["a", "b c"], max_tokens=3, n=2, seed=1)
        self.assertEqual([c.index for c in r.choices], [0, 1, 2, 3])
        ids = client().completions.create(model=MODEL, prompt=[1, 2, 3], max_tokens=2)
        self.assertEqual(ids.usage.prompt_tokens, 3)


class Concurrency(unittest.TestCase):
    def test_32_streaming_clients(self):
        prompts = [f"Tell me about topic {i}" for i in range(4)]
        expected = [
            chat(messages=[{"role": "user", "content": p}], temperature=0, max_tokens=20).choices[0].message.content
            for p in prompts
        ]
        results, errors = {}, []

        def run(i):
            try:
                texts, finishes, _ = stream_text(
                    messages=[{"role": "user", "content": prompts[i % 4]}], temperature=0, max_tokens=20
                )
                results[i] = (texts[0], finishes[0])
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 32)
        for i, (text, finish) in results.items():
            self.assertEqual(text, expected[i % 4], f"client {i}")
            self.assertIn(finish, ("stop", "length"))

    def test_disconnect_frees_kv_blocks(self):
        before = metrics()
        body = {
            "model": MODEL, "stream": True, "n": 16, "max_tokens": 900, "temperature": 0,
            "messages": [{"role": "user", "content": "Write a long story."}],
        }
        req = urllib.request.Request(BASE + "/v1/chat/completions", data=json.dumps(body).encode(), method="POST")
        req.add_header("Authorization", "Bearer " + KEY)
        res = urllib.request.urlopen(req, timeout=60)
        for _ in range(5):
            self.assertTrue(res.readline())
        during = metrics()
        self.assertGreater(during["herd_kv_blocks_used"], 0)
        res.close()
        deadline = time.time() + 30
        while time.time() < deadline:
            now = metrics()
            if now["herd_kv_blocks_used"] == 0 and now["herd_requests_running"] == 0 and now["herd_requests_waiting"] == 0:
                break
            time.sleep(0.1)
        self.assertEqual(now["herd_kv_blocks_used"], 0)
        generated = now["herd_generation_tokens_total"] - before["herd_generation_tokens_total"]
        self.assertLess(generated, 16 * 1900 / 2, "the abandoned request kept generating")
        self.assertEqual(chat(max_tokens=2).choices[0].index, 0)


class BadInput(unittest.TestCase):
    def assert_error(self, status, body, expected_status, code=None):
        self.assertEqual(status, expected_status, body)
        self.assertEqual(set(body["error"]), {"message", "type", "param", "code"})
        self.assertTrue(body["error"]["message"])
        if code:
            self.assertEqual(body["error"]["code"], code)
        # The server goes on serving.
        self.assertEqual(chat(max_tokens=1).choices[0].index, 0)

    def post(self, body, key=KEY):
        return http("POST", "/v1/chat/completions", body, key=key)

    def ok_body(self, **kw):
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        body.update(kw)
        return body

    def test_malformed_json(self):
        self.assert_error(*http("POST", "/v1/chat/completions", raw=b'{"model": "herd-embedded", "messages": ['), 400)

    def test_unknown_model(self):
        self.assert_error(*self.post(self.ok_body(model="gpt-7")), 404, "model_not_found")
        with self.assertRaises(openai.NotFoundError):
            chat(model="gpt-7")

    def test_missing_fields(self):
        self.assert_error(*self.post({"model": MODEL}), 400)
        self.assert_error(*self.post({"messages": [{"role": "user", "content": "hi"}]}), 400)
        self.assert_error(*self.post(self.ok_body(messages=[{"role": "wizard", "content": "hi"}])), 400)
        self.assert_error(*http("POST", "/v1/completions", {"model": MODEL}), 400)

    def test_bad_max_tokens(self):
        self.assert_error(*self.post(self.ok_body(max_tokens=-1)), 400)
        self.assert_error(*self.post(self.ok_body(max_tokens=0)), 400)
        self.assert_error(*self.post(self.ok_body(max_tokens=10**12)), 400, "context_length_exceeded")
        self.assert_error(*http("POST", "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": -5}), 400)

    def test_prompt_past_the_context(self):
        long = " ".join(f"w{i}" for i in range(3000))
        self.assert_error(*self.post(self.ok_body(messages=[{"role": "user", "content": long}])), 400,
                          "context_length_exceeded")
        with self.assertRaises(openai.BadRequestError):
            client().completions.create(model=MODEL, prompt=long, max_tokens=1)

    def test_wrong_api_key(self):
        self.assert_error(*self.post(self.ok_body(), key="wrong"), 401, "invalid_api_key")
        self.assert_error(*self.post(self.ok_body(), key=None), 401)
        with self.assertRaises(openai.AuthenticationError):
            client("wrong").models.list()

    def test_invalid_json_schema(self):
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}}
        self.assert_error(*self.post(self.ok_body(response_format=fmt)), 400)
        status, body = self.post(self.ok_body(response_format=fmt))
        self.assertEqual(body["error"]["param"], "response_format")
        self.assertIn("no-such-type", body["error"]["message"])
        unsupported = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 3}}}
        self.assert_error(*self.post(self.ok_body(response_format=unsupported)), 400)
        self.assert_error(*self.post(self.ok_body(response_format={"type": "json_schema", "json_schema": {"name": "x"}})), 400)

    def test_other_bad_values(self):
        for kw in [
            {"n": 0}, {"temperature": 5}, {"top_p": 0}, {"frequency_penalty": 1.0},
            {"top_logprobs": 2}, {"stop": 5},
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            {"tool_choice": "required"},
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "1", "type": "function",
                                                              "function": {"name": "f", "arguments": "[1]"}}]}]},
            {"messages": []},
        ]:
            with self.subTest(kw=kw):
                self.assert_error(*self.post(self.ok_body(**kw)), 400)
        self.assert_error(*http("GET", "/v1/nothing-here"), 404)


class Metrics(unittest.TestCase):
    def test_prometheus_text(self):
        chat(max_tokens=3)
        m = metrics()
        for name in [
            'herd_requests_total{endpoint="/v1/chat/completions",status="200"}',
            "herd_prompt_tokens_total", "herd_generation_tokens_total",
            "herd_time_to_first_token_seconds_count", "herd_inter_token_latency_seconds_count",
            "herd_kv_blocks_used", "herd_kv_blocks_total", "herd_requests_waiting",
        ]:
            self.assertIn(name, m)
        self.assertGreater(m["herd_kv_blocks_total"], 0)
        self.assertGreater(m["herd_time_to_first_token_seconds_count"], 0)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        HERD = sys.argv.pop(1)
    unittest.main(verbosity=2)

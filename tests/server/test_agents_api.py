"""herd serve --agents against the official `openai` Python client.

Creates the shop-support agent (`herd agent new`), serves it with the
embedded teacher, and checks through the API: the agent is a model; "where
is my order 1042?" gives a lookup_order call with 1042 and an answer with
the order's real status (English and German); a server killed mid-
conversation and restarted continues the conversation with its history;
20 concurrent conversations complete with their own, unmixed histories;
bad conversation ids are clear errors.

    python3 tests/server/test_agents_api.py [path/to/herd]   (default target/debug/herd)
"""

import concurrent.futures
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request

import openai

import herd_server

HERD = os.environ.get("HERD_BIN", "target/debug/herd")
AGENT = "shop-support"
TMP = None
SERVER = None
BASE = None
# How the corpus words each order status (herd-shop's phrasebook keywords).
STATUS_WORDS = {
    "processing": ("processing", "in Bearbeitung"),
    "shipped": ("shipped", "versandt"),
    "delivered": ("delivered", "zugestellt"),
    "cancelled": ("cancelled", "storniert"),
    "returned": ("returned", "zurückgeschickt"),
}


def agent_dir():
    return os.path.join(TMP.name, "support")


def start_server():
    global SERVER, BASE
    SERVER, BASE = herd_server.start(HERD, ["--kv-cache-memory", "64MiB", "--agents", agent_dir()])


def setUpModule():
    global TMP
    TMP = tempfile.TemporaryDirectory()
    subprocess.run([HERD, "agent", "new", "--template", "shop-support", agent_dir()], check=True,
                   stdout=subprocess.DEVNULL)
    start_server()


def tearDownModule():
    SERVER.terminate()
    SERVER.wait(timeout=10)
    TMP.cleanup()


def client():
    return openai.OpenAI(base_url=BASE + "/v1", api_key="none", max_retries=0, timeout=300)


def ask(text, conversation_id=None):
    extra = {"conversation_id": conversation_id} if conversation_id else None
    reply = client().chat.completions.create(
        model=AGENT, messages=[{"role": "user", "content": text}], extra_body=extra)
    return reply, reply.model_extra


def stored(conversation_id):
    """(user messages, tool-step arguments) of a conversation, read from the SQLite file."""
    db = sqlite3.connect(os.path.join(agent_dir(), "conversations.db"))
    try:
        messages = [json.loads(m) for (m,) in db.execute(
            "SELECT message FROM messages WHERE conversation = ? ORDER BY seq", (conversation_id,))]
        steps = [json.loads(s) for (s,) in db.execute(
            "SELECT step FROM steps WHERE conversation = ? ORDER BY seq", (conversation_id,))]
    finally:
        db.close()
    return [m["content"] for m in messages if m["role"] == "user"], steps


def order_status(order_id):
    db = sqlite3.connect(os.path.join(agent_dir(), "shop.db"))
    try:
        return db.execute("SELECT status FROM orders WHERE id = ?", (order_id,)).fetchone()[0]
    finally:
        db.close()


class AgentModel(unittest.TestCase):
    def test_listed_as_a_model(self):
        ids = {m.id: m for m in client().models.list().data}
        self.assertIn(AGENT, ids)
        self.assertTrue(ids[AGENT].model_extra["agent"])
        self.assertEqual(ids[AGENT].model_extra["tools"], ["lookup_order", "check_stock"])

    def test_where_is_my_order_1042(self):
        status = order_status(1042)
        failures = []
        for question, german in [("where is my order 1042?", False), ("Wo ist meine Bestellung 1042?", True)]:
            reply, extra = ask(question)
            answer = reply.choices[0].message.content
            steps = extra["agent_steps"]
            print(f"\n  {question} -> steps {steps} -> {answer!r}", file=sys.stderr)
            word = STATUS_WORDS[status][german]
            if not steps or steps[0]["tool"] != "lookup_order" or steps[0]["arguments"] != {"order_id": 1042} \
                    or steps[0]["outcome"] != "ok":
                failures.append(f"{question}: no valid lookup_order(1042) call: {steps}")
            elif word not in answer:
                failures.append(f"{question}: answer {answer!r} lacks the status {word!r}")
            # Two model calls (the tool call, the answer): the usage sums both.
            usage = reply.usage
            if not (usage.prompt_tokens > 2 * usage.completion_tokens > 0
                    and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens):
                failures.append(f"{question}: implausible usage {usage}")
        self.assertEqual(failures, [])

    def test_streamed_reply_carries_the_steps(self):
        chunks = list(client().chat.completions.create(
            model=AGENT, messages=[{"role": "user", "content": "is the Teapot in stock?"}], stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        last = chunks[-1].model_extra
        self.assertTrue(text)
        self.assertTrue(last["conversation_id"].startswith("c-"))
        self.assertIsInstance(last["agent_steps"], list)

    def test_bad_conversation_ids_are_clear_errors(self):
        for conversation_id, status in [("c-doesnotexist", 404), ("no spaces; allowed", 400)]:
            with self.assertRaises(openai.APIStatusError) as caught:
                ask("hello", conversation_id)
            self.assertEqual(caught.exception.status_code, status)
            self.assertIn("conversation", caught.exception.message)


class Restart(unittest.TestCase):
    def test_conversation_survives_a_killed_server(self):
        first, extra = ask("where is my order 1042?")
        conversation_id = extra["conversation_id"]
        SERVER.kill()  # no clean shutdown
        SERVER.wait(timeout=10)
        start_server()
        second, extra = ask("thanks, and order 1043?", conversation_id)
        self.assertEqual(extra["conversation_id"], conversation_id)
        users, steps = stored(conversation_id)
        self.assertEqual(users, ["where is my order 1042?", "thanks, and order 1043?"])
        self.assertEqual(len(steps), len(first.model_extra["agent_steps"]) + len(extra["agent_steps"]))


class Load(unittest.TestCase):
    def test_twenty_concurrent_conversations(self):
        def conversation(i):
            a = f"customer {i}: where is my order {1100 + i}?"
            b = f"customer {i}: and order {1200 + i}?"
            _, extra = ask(a)
            _, extra2 = ask(b, extra["conversation_id"])
            return i, extra["conversation_id"], extra2["conversation_id"], (a, b)

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            results = list(pool.map(conversation, range(20)))
        ids = set()
        for i, first_id, second_id, questions in results:
            self.assertEqual(first_id, second_id)
            users, _ = stored(first_id)
            self.assertEqual(users, list(questions), f"conversation {i} holds only its own messages")
            ids.add(first_id)
        self.assertEqual(len(ids), 20)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        HERD = sys.argv.pop(1)
    unittest.main(verbosity=2)

// Drives Mandate with the official LangGraph JS SDK and prints what it got, as one JSON object.
// Started by tests/e2e/test_conformance_js.py, which checks the output against the reference
// OpenAPI document and Mandate's rules. Environment: MANDATE_URL, ALICE_TOKEN, DAVE_TOKEN (an
// assistant admin of acme), CAROL_TOKEN (another tenant).
import { Client } from "@langchain/langgraph-sdk";

const url = process.env.MANDATE_URL;
const client = (token) =>
  new Client({ apiUrl: url, apiKey: null, defaultHeaders: { Authorization: `Bearer ${token}` }, callerOptions: { maxRetries: 0 } });
const alice = client(process.env.ALICE_TOKEN);
const dave = client(process.env.DAVE_TOKEN);
const carol = client(process.env.CAROL_TOKEN);
const user = (content) => ({ messages: [{ role: "user", content }] });
const QUESTION = "What are the ACME contract terms?";
const TICKET = "Open a ticket: projector in room 2 is dead";

// An SDK error as {status, code}: the SDK puts the answer's body in its message.
async function refusal(promise) {
  try {
    await promise;
    return { status: 200, code: null };
  } catch (error) {
    const body = String(error.message).replace(/^HTTP \d+: /, "");
    let code = null;
    try {
      code = JSON.parse(body).code ?? null;
    } catch {
      code = body.slice(0, 80);
    }
    return { status: error.status ?? null, code };
  }
}

async function collect(stream) {
  const parts = [];
  for await (const part of stream) parts.push(part);
  return parts;
}

const out = {};

// Assistants.
out.assistants_search = await alice.assistants.search({ limit: 100 });
out.assistant_system = await alice.assistants.get("mandate");
out.assistant_schemas = await alice.assistants.getSchemas("mandate");
out.assistant_graph = await alice.assistants.getGraph("mandate");
const created = await dave.assistants.create({
  graphId: "mandate",
  name: "JS team",
  config: { tags: ["js"] },
  metadata: { sdk: "js" },
});
out.assistant_created = created;
out.assistant_updated = await dave.assistants.update(created.assistant_id, { name: "JS team 2", metadata: { stage: "2" } });
out.assistant_versions = await dave.assistants.getVersions(created.assistant_id);
out.assistant_latest = await dave.assistants.setLatest(created.assistant_id, 1);
out.assistant_count = await alice.assistants.count({ metadata: { sdk: "js" } });
out.alice_create = await refusal(alice.assistants.create({ graphId: "mandate", name: "not allowed" }));
out.carol_get = await refusal(carol.assistants.get(created.assistant_id));
out.control_field = await refusal(
  dave.assistants.create({ graphId: "mandate", context: { principal: { subject: "bob" } }, name: "steering" }),
);

// Threads.
const thread = await alice.threads.create({ metadata: { sdk: "js" } });
out.thread_created = thread;
out.thread_updated = await alice.threads.update(thread.thread_id, { metadata: { stage: "2" } });
out.threads_search = await alice.threads.search({ metadata: { sdk: "js" }, sortBy: "created_at", sortOrder: "asc" });
out.carol_thread = await refusal(carol.threads.get(thread.thread_id));

// Runs on a thread, on the assistant: stream with events, then a consent and its answer.
let runCreated = null;
const streamed = await collect(
  alice.runs.stream(thread.thread_id, created.assistant_id, {
    input: user(QUESTION),
    streamMode: ["values", "updates", "events"],
    onRunCreated: (meta) => {
      runCreated = meta;
    },
  }),
);
out.stream_events = streamed.map((p) => p.event);
out.stream_event_sample = streamed.find((p) => p.event === "events")?.data ?? null;
out.stream_last_values = [...streamed].reverse().find((p) => p.event === "values")?.data ?? null;
out.stream_run_created = runCreated;
out.paused = await alice.runs.wait(thread.thread_id, created.assistant_id, { input: user(TICKET) });
out.state = await alice.threads.getState(thread.thread_id);
out.resumed = await alice.runs.wait(thread.thread_id, created.assistant_id, {
  command: { resume: { decisions: [{ type: "approve" }] } },
});
out.history = await alice.threads.getHistory(thread.thread_id, { limit: 100 });
out.runs_list = await alice.runs.list(thread.thread_id);
out.state_update = await alice.threads.updateState(thread.thread_id, { values: user("one more thing") });
out.state_fork = await refusal(
  alice.threads.updateState(thread.thread_id, { values: user("fork"), checkpoint: out.history.at(-1).checkpoint }),
);
out.steering = await refusal(
  alice.runs.wait(thread.thread_id, "mandate", { input: user(QUESTION), config: { configurable: { thread_id: "x" } } }),
);

// Background and stateless runs.
const background = await alice.runs.create(thread.thread_id, created.assistant_id, { input: user(QUESTION) });
out.background = background;
out.joined = await alice.runs.join(thread.thread_id, background.run_id);
out.run = await alice.runs.get(thread.thread_id, background.run_id);
let statelessRun = null;
out.stateless_wait = await alice.runs.wait(null, "mandate", {
  input: user(QUESTION),
  onRunCreated: (meta) => {
    statelessRun = meta;
  },
});
out.stateless_thread_after = await refusal(alice.threads.get(statelessRun.thread_id));
out.stateless_stream = (await collect(alice.runs.stream(null, "mandate", { input: user(QUESTION) }))).map((p) => p.event);

// Clean up.
await dave.assistants.delete(created.assistant_id);
out.assistant_after_delete = await refusal(alice.assistants.get(created.assistant_id));
await alice.threads.delete(thread.thread_id);
out.thread_after_delete = await refusal(alice.threads.get(thread.thread_id));

process.stdout.write(JSON.stringify(out));

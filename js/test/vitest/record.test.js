// Record modes end to end: a recording run (SSEVCR_RECORD=once, through `ssevcr record` as a
// reverse proxy) against a local upstream, then a replay of what it recorded with the upstream
// stopped: the same text, the upstream's gaps, and a request it never recorded is a miss.

import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import OpenAI from "openai";
import { afterAll, expect, test } from "vitest";

import { MissError, TestCassettes } from "../../src/index.js";
import { exported, openaiText, show } from "../cassettes.js";
import { lateness, median } from "../timing.js";
import { fixtureEvents, startUpstream } from "../upstream.js";

const FIXTURE = "openai-chat/text.sse";
const GAP_MS = 60;
const QUESTION = { model: "gpt-4o", messages: [{ role: "user", content: "Say hello" }] };
const root = mkdtempSync(join(tmpdir(), "ssevcr-js-record-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function expectedText() {
  const events = fixtureEvents(FIXTURE).map((raw) => ({
    data: raw
      .toString()
      .replace(/^data: /, "")
      .trim(),
  }));
  return openaiText(events);
}

async function chat(handle, content = "Say hello") {
  const client = new OpenAI({
    baseURL: handle.openaiBaseURL,
    apiKey: "sk-test-secret",
    maxRetries: 0,
  });
  const t0 = performance.now();
  const stream = await client.chat.completions.create({
    ...QUESTION,
    messages: [{ role: "user", content }],
    stream: true,
  });
  let text = "";
  const arrivals = [];
  for await (const chunk of stream) {
    arrivals.push((performance.now() - t0) / 1000);
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  return { text, arrivals };
}

test("record once against a local upstream, then replay it with the upstream stopped", async () => {
  const upstream = await startUpstream({ fixture: FIXTURE, gapMs: GAP_MS });
  const file = join(root, "chat.test.js");
  const title = "says hello";

  // the recording run: no cassette yet, so `once` records through ssevcr record
  const recordingRun = new TestCassettes({
    file,
    title,
    root,
    defaults: { upstream: upstream.url },
  });
  const recording = await recordingRun.start({ record: "once" });
  expect(recording.recording).toBe(true);
  const live = await chat(recording);
  await recordingRun.finish();
  await upstream.stop();
  expect(live.text).toBe(expectedText());
  expect(upstream.sent).toHaveLength(1);

  const cassette = join(root, "cassettes", "chat.test", "says-hello.msgpack");
  expect(statSync(cassette).size).toBeGreaterThan(0);
  const recorded = show(cassette).interactions;
  expect(recorded).toHaveLength(1);
  expect(recorded[0].outcome).toBe("complete");
  expect(openaiText(recorded[0].events)).toBe(expectedText());
  // the recorded gaps are the upstream's: each within a few ms of when it really sent them
  const sent = upstream.sent[0].times; // ms, one per chunk (= per event)
  const events = recorded[0].events;
  expect(events).toHaveLength(sent.length);
  const errors = events.slice(1).map((e, i) => Math.abs(e.gap - (sent[i + 1] - sent[i]) / 1000));
  expect(median(errors)).toBeLessThan(0.01);
  expect(median(events.slice(1).map((e) => e.gap))).toBeGreaterThan(0.9 * (GAP_MS / 1000));

  // the replay run: the upstream is gone; `once` with the cassette there only replays
  const replayRun = new TestCassettes({ file, title, root, defaults: { upstream: upstream.url } });
  const replay = await replayRun.start({ record: "once" });
  expect(replay.recording).toBe(false);
  const again = await chat(replay);
  expect(again.text).toBe(live.text);
  const late = lateness(
    again.arrivals,
    recorded[0].events.filter((e) => e.data !== "[DONE]").map((e) => e.at),
  );
  for (const l of late) expect(l).toBeGreaterThan(-0.002);
  expect(median(late.map((l) => Math.abs(l - median(late))))).toBeLessThan(0.02);

  // a request it never recorded: the SDK gets a 404 (not retried), the test fails with why
  await expect(chat(replay, "Something else")).rejects.toThrow(OpenAI.NotFoundError);
  const failure = await replayRun.finish().then(
    () => null,
    (e) => e,
  );
  expect(failure).toBeInstanceOf(MissError);
  expect(failure.message).toMatch(
    /1 request matched no recorded interaction \(test "says hello"\)/,
  );
  expect(failure.message).toContain("closest: #1 POST");
  expect(failure.message).toContain('recorded "Say hello", got "Something else"');
});

test("record all replaces the cassette; the credential never reaches it", async () => {
  const upstream = await startUpstream({ fixture: FIXTURE, gapMs: 5 });
  const run = new TestCassettes({ file: join(root, "all.test.js"), title: "again", root });
  for (let n = 0; n < 2; n++) {
    const recording = await run.start({ record: "all", upstream: upstream.url });
    expect((await chat(recording)).text).toBe(expectedText());
    await run.finish();
  }
  await upstream.stop();
  const cassette = join(root, "cassettes", "all.test", "again.msgpack");
  expect(show(cassette).interactions).toHaveLength(1); // the second run replaced the first
  const twin = JSON.stringify(exported(cassette));
  expect(twin).toContain('["authorization","REDACTED"]');
  expect(twin).not.toContain("sk-test-secret");
});

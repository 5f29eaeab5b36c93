// examples/chat-ui in Debian's Chromium, driven through the ssevcr/playwright fixture: the page
// streams the cassette's text as recorded, shows faults as its error states, and reaches the
// replay either as its API base URL (another origin: CORS) or through page.route.

import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize } from "node:path";

import { expect, test } from "../../src/playwright.js";
import { REPO, example, openaiText, show } from "../cassettes.js";

const CHAT_UI = join(REPO, "examples", "chat-ui");
const CHAT = "cassettes/examples/openai-chat-text.msgpack";
const EVENTS = show(example("openai-chat-text")).interactions[0].events;
const TEXT = openaiText(EVENTS);
const TERMINAL = [
  "done",
  "network",
  "http",
  "aborted",
  "provider",
  "bad-event",
  "incomplete",
  "timeout",
];
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };

let pages; // the example's static files, from an origin of their own
test.beforeAll(async () => {
  const server = createServer((req, res) => {
    const path = normalize(new URL(req.url, "http://x").pathname).replace(/^\/+/, "");
    try {
      const body = readFileSync(join(CHAT_UI, path));
      res.writeHead(200, { "content-type": TYPES[extname(path)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  pages = { server, url: `http://127.0.0.1:${server.address().port}` };
});
test.afterAll(async () => {
  pages.server.closeAllConnections();
  await new Promise((resolve) => pages.server.close(resolve));
});

/** Click send, then sample [state, text] until the page settles. */
async function watch(page) {
  const samples = [];
  const t0 = Date.now();
  await page.click("#send");
  for (;;) {
    const [state, text] = await page.evaluate(() => [
      document.body.dataset.state,
      document.getElementById("answer").textContent,
    ]);
    samples.push({ at: (Date.now() - t0) / 1000, state, text });
    if (TERMINAL.includes(state) || Date.now() - t0 > 20_000) return samples;
    await page.waitForTimeout(25);
  }
}

async function open(page, api) {
  const query = api ? `?${new URLSearchParams({ api })}` : "";
  await page.goto(`${pages.url}/index.html${query}`);
  await page.waitForFunction(() => document.body.dataset.state === "idle");
}

function expectStreamed(samples) {
  const final = samples.at(-1);
  expect(final.state).toBe("done");
  expect(final.text).toBe(TEXT);
  for (let i = 1; i < samples.length; i++)
    expect(samples[i].text.startsWith(samples[i - 1].text)).toBe(true);
  // it grew in steps over the recorded span, not in one piece
  const partial = new Set(samples.map((s) => s.text).filter((t) => t && t !== TEXT));
  expect(partial.size).toBeGreaterThanOrEqual(4);
}

test("the page streams the recorded text with the recorded timing", async ({ page, ssevcr }) => {
  const replay = await ssevcr({ cassette: CHAT, root: REPO });
  await open(page, replay.url);
  const samples = await watch(page);
  expectStreamed(samples);
  const firstText = EVENTS.find((e) => openaiText([e])).at;
  expect(samples.find((s) => s.text).at).toBeGreaterThanOrEqual(0.8 * firstText);
  expect(await replay.misses()).toEqual([]);
});

test("the cassette named after the test", async ({ page, ssevcr }) => {
  const root = mkdtempSync(join(tmpdir(), "ssevcr-pw-"));
  try {
    const path = ssevcr.path({ root });
    expect(path).toBe(
      join(root, "cassettes", "chat-ui.spec", "the-cassette-named-after-the-test.msgpack"),
    );
    mkdirSync(dirname(path), { recursive: true });
    copyFileSync(example("openai-chat-text"), path);
    const replay = await ssevcr({ root });
    await open(page, replay.url);
    expectStreamed(await watch(page));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("page.route sends the page's own-origin API calls to the replay, still streaming", async ({
  page,
  ssevcr,
}) => {
  const replay = await ssevcr({ cassette: CHAT, root: REPO });
  await ssevcr.route(page, `${pages.url}/v1/**`, replay);
  await open(page); // no api parameter: the page calls its own origin
  expectStreamed(await watch(page));
});

test("a stream cut after event 5 shows the aborted state", async ({ page, ssevcr }) => {
  const replay = await ssevcr({
    cassette: CHAT,
    root: REPO,
    faults: ["truncate:after=5,end=abort"],
  });
  await open(page, replay.url);
  const final = (await watch(page)).at(-1);
  expect(final.state).toBe("aborted");
  // what arrived stays, as whole events (Chromium may drop what came with the abort)
  expect(TEXT.startsWith(final.text)).toBe(true);
  expect(final.text.length).toBeLessThanOrEqual(openaiText(EVENTS.slice(0, 5)).length);
});

test("a stall fires the page's inactivity timeout", async ({ page, ssevcr }) => {
  const replay = await ssevcr({
    cassette: CHAT,
    root: REPO,
    faults: ["stall:before=3,for=forever"],
  });
  await open(page, replay.url);
  const final = (await watch(page)).at(-1);
  expect(final.state).toBe("timeout");
  expect(final.text).toBe(openaiText(EVENTS.slice(0, 2)));
});

test("the provider's error event shows the provider state", async ({ page, ssevcr }) => {
  const replay = await ssevcr({ cassette: CHAT, root: REPO, faults: ["error:after=4"] });
  await open(page, replay.url);
  const final = (await watch(page)).at(-1);
  expect(final.state).toBe("provider");
  expect(final.text).toBe(openaiText(EVENTS.slice(0, 4)));
});

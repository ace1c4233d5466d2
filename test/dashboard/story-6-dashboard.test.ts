import { mkdtemp, rm } from "node:fs/promises";
import { get } from "node:http";
import os from "node:os";
import path from "node:path";
import type { MqttClient } from "mqtt";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser, type Browser } from "../support/browser.ts";
import {
  api,
  collect,
  connectDevice,
  ingestCaughtUp,
  provision,
  startTestPlatform,
  type TestPlatform,
} from "../support/platform.ts";
import { ROOT, run } from "../support/process.ts";
import { optIn, useExampleRules } from "../support/story.ts";
import { waitFor } from "../support/wait.ts";

const HOUR = 3_600_000;
const TROUBLED = "kiosk-station-3";
const COMPLAINT = "The screen keeps freezing, terrible.";

interface Profile {
  id: string;
  kind: string;
  subject?: string;
  /** Latency range in ms, and the share of sessions with an error. */
  latency: [number, number];
  errors: number;
  temp: [number, number];
  feedback: Array<{ hoursAgo: number; rating?: number; text?: string }>;
}

const FLEET: Profile[] = [
  {
    id: "atm-lobby-01",
    kind: "atm",
    subject: "cust-amir",
    latency: [80, 300],
    errors: 0,
    temp: [18, 24],
    feedback: [
      { hoursAgo: 20, rating: 5, text: "Fast cash and no queue, great!" },
      { hoursAgo: 3, rating: 4 },
    ],
  },
  {
    id: "tv-livingroom",
    kind: "tv",
    subject: "cust-ines",
    latency: [60, 250],
    errors: 0,
    temp: [20, 23],
    feedback: [{ hoursAgo: 10, rating: 5, text: "Picture is great and the menus are clear." }],
  },
  {
    id: "banking-app-ana",
    kind: "banking-app",
    subject: "cust-ana",
    latency: [90, 450],
    errors: 0,
    temp: [21, 26],
    feedback: [{ hoursAgo: 6, rating: 5, text: "Love the new layout, everything is easy to find." }],
  },
  {
    id: "ride-app-li",
    kind: "ride-app",
    subject: "cust-li",
    latency: [200, 1400],
    errors: 0.1,
    temp: [15, 25],
    feedback: [{ hoursAgo: 8, rating: 3, text: "Okay, but the map is slow sometimes." }],
  },
  {
    id: "kiosk-station-4",
    kind: "kiosk",
    subject: "cust-noor",
    latency: [150, 900],
    errors: 0.05,
    temp: [19, 25],
    feedback: [{ hoursAgo: 12, rating: 4, text: "Quick and easy, thank you!" }],
  },
  {
    id: TROUBLED,
    kind: "kiosk",
    subject: "cust-maya",
    latency: [400, 3200],
    errors: 0.8,
    temp: [24, 33],
    feedback: [
      { hoursAgo: 22, rating: 4, text: "Works fine." },
      { hoursAgo: 14, rating: 1, text: "Bad service, I am disappointed." },
      { hoursAgo: 9, rating: 2, text: "Took forever to load, really annoying." },
      { hoursAgo: 5, rating: 1, text: "This is frustrating, it keeps failing." },
      { hoursAgo: 1, rating: 1, text: COMPLAINT },
    ],
  },
];

/** A repeatable sequence, so the screenshots show the same fleet every time. */
function seeded(seed: number) {
  let x = seed;
  return () => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
}

/**
 * Story 6 end to end in a real browser: devices publish over MQTT (mqtt.js,
 * and Debian's mosquitto_pub for the live update), the troubled kiosk's
 * customer turns negative, and a support agent signs in with a support key,
 * finds the worst device at the top, opens it, and sees the feedback with its
 * score and the actions the platform took on it.
 */
describe("story 6: voice of the customer on the support dashboard", () => {
  let t: TestPlatform;
  let browser: Browser;
  let supportKey: string;
  let shots: string;
  const tokens = new Map<string, string>();
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    shots =
      process.env.REFEED_WRITE_SCREENSHOTS === "1"
        ? path.join(ROOT, "docs")
        : await mkdtemp(path.join(os.tmpdir(), "refeed-shots-"));
    t = await startTestPlatform();
    await useExampleRules(t, "cool-theme", "ask-for-rating");
    await t.restart();
    supportKey = (await api(t, "POST", "/api/keys", { name: "support desk", role: "support" })).body.token as string;

    const now = Date.now();
    for (const p of FLEET) {
      tokens.set(
        p.id,
        (await provision(t, { id: p.id, kind: p.kind, ...(p.subject ? { subject: p.subject } : {}) })).token,
      );
      if (p.subject) await optIn(t, p.subject);
    }
    await Promise.all(
      FLEET.map(async (p, index) => {
        const client = await connectDevice(t.mqttUrl, p.id, tokens.get(p.id)!);
        clients.push(client);
        const actions = collect(client);
        await client.subscribeAsync(`devices/${p.id}/actions`, { qos: 1 });
        const random = seeded(index + 7);
        const between = ([lo, hi]: [number, number]) => Math.round(lo + random() * (hi - lo));
        const subject = p.subject ? { subject: p.subject } : {};
        // A day of telemetry every 20 minutes, with the device's own timestamps.
        const telemetry = Array.from({ length: 72 }, (_, i) => ({
          ts: now - 24 * HOUR + i * 20 * 60_000,
          metrics: { latency_ms: between(p.latency), temp: Math.round(between(p.temp) * 10) / 10 },
        }));
        await client.publishAsync(`devices/${p.id}/telemetry`, JSON.stringify(telemetry), { qos: 1 });
        // A session every two hours.
        const events = Array.from({ length: 12 }, (_, i) => {
          const at = now - 23 * HOUR + i * 2 * HOUR;
          return [
            { ts: at, ...subject, name: "session_start" },
            { ts: at + 20_000, ...subject, name: "screen_view", props: { screen: "home" } },
            ...(random() < p.errors
              ? [{ ts: at + 30_000, ...subject, name: "error", props: { code: "E_TIMEOUT" } }]
              : []),
            { ts: at + 90_000, ...subject, name: "session_end", props: { seconds: 90 } },
          ];
        }).flat();
        await client.publishAsync(`devices/${p.id}/events`, JSON.stringify(events), { qos: 1 });
        await client.publishAsync(
          `devices/${p.id}/feedback`,
          JSON.stringify(
            p.feedback.map((f) => ({ ts: now - f.hoursAgo * HOUR, ...subject, ...f, hoursAgo: undefined })),
          ),
          { qos: 1 },
        );
        // The devices answer what the platform sends them: the hot kiosk applies the cool theme,
        // its unhappy customer declines the rating request, the others accept it.
        const answered = new Set<string>();
        await waitFor(
          async () => {
            for (const a of (actions.get(`devices/${p.id}/actions`) ?? []).map(
              (m) => JSON.parse(m) as { id: string; kind: string },
            )) {
              if (answered.has(a.id)) continue;
              answered.add(a.id);
              const status = a.kind === "suggest" ? (p.id === TROUBLED ? "declined" : "accepted") : "applied";
              await client.publishAsync(`devices/${p.id}/acks`, JSON.stringify({ action: a.id, status }), { qos: 1 });
            }
            return p.id !== TROUBLED || answered.size >= 2;
          },
          `${p.id} to answer its actions`,
          30_000,
        );
      }),
    );
    // The fleet view is computed from InfluxDB: wait until the kiosk's answers are in it.
    await waitFor(
      async () => {
        const h = (await api(t, "GET", `/api/devices/${TROUBLED}/health`, undefined, supportKey)).body as {
          components?: { participation: { inputs: { declined: number } } };
        };
        return h.components?.participation.inputs.declined === 1;
      },
      "the declined rating request in the kiosk's health",
      30_000,
    );
    // The PUBACKs mean durable on disk: the health and timelines the pages read come from InfluxDB, which has every record moments later.
    await ingestCaughtUp(t);
    browser = await launchBrowser();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    for (const c of clients) await c.endAsync().catch(() => {});
    await t?.close();
    if (process.env.REFEED_WRITE_SCREENSHOTS !== "1" && shots) await rm(shots, { recursive: true, force: true });
  });

  /** The page's console errors and uncaught exceptions (a CSP violation is one). */
  const watch = (page: Page) => {
    const problems: string[] = [];
    page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
    page.on("pageerror", (e) => problems.push(`page: ${e.message}`));
    return { page, problems };
  };

  it("signs in with a support key, finds the worst device at the top, and sees its negative feedback and the actions taken", async () => {
    const { page, problems } = watch(await browser.context.newPage());
    await page.goto(`${t.http}/dashboard`);

    // A wrong key is refused with a reason; the support key signs in.
    await page.getByLabel("Support key").fill("rfk.bm9wZQ.bm9wZQ");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "This key is not valid" }).waitFor();
    await page.getByLabel("Support key").fill(supportKey);
    await page.getByRole("button", { name: "Sign in" }).click();

    // The kiosk whose customer turned negative is at the top, with what they said beside it.
    const first = page.locator("tbody tr").first();
    await page.waitForFunction(
      (id) => document.querySelector<HTMLElement>("tbody tr")?.dataset.device === id,
      TROUBLED,
    );
    // The fleet view catches up with news within a refresh or two; the page follows it live.
    await expect.poll(() => first.locator("q").textContent(), { timeout: 30_000 }).toBe(COMPLAINT);
    await expect
      .poll(() => first.locator(".said .meta").textContent(), { timeout: 30_000 })
      .toMatch(/sentiment \u22120\.60 · rating 1\/5 · 4 negative/);
    expect(await first.locator(".score .band").textContent()).toBe("poor");
    expect(await page.locator("tbody tr").count()).toBe(FLEET.length);
    await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
    await page.screenshot({ path: path.join(shots, "dashboard-fleet.png"), fullPage: true });

    // Search narrows the fleet, by a customer's id too.
    await page.getByLabel("Search").fill("cust-ines");
    await page.waitForFunction(() => document.querySelectorAll("tbody tr").length === 1);
    expect(await page.locator("tbody tr").first().getAttribute("data-device")).toBe("tv-livingroom");
    await page.getByLabel("Search").fill("");
    await page.waitForFunction((n) => document.querySelectorAll("tbody tr[data-device]").length === n, FLEET.length);

    // Open it from the keyboard.
    await page.getByRole("link", { name: TROUBLED }).focus();
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { level: 1, name: TROUBLED }).waitFor();

    // What the customer said, with its score.
    const complaint = page.locator("li.entry.feedback", { hasText: COMPLAINT });
    await complaint.waitFor();
    expect(await complaint.locator(".meta").textContent()).toBe(
      "rating 1/5 · sentiment \u22120.60 · customer cust-maya",
    );
    expect(await complaint.getAttribute("class")).toContain("negative");
    const sentiment = page.locator('[data-component="sentiment"]');
    expect(await sentiment.locator("blockquote").textContent()).toBe(COMPLAINT);
    expect(await sentiment.textContent()).toMatch(
      /5 ratings averaging 1.8 of 5 and 5 texts averaging -0\.\d+ sentiment \(4 negative\)/,
    );

    // What the platform changed on the device, why, and what became of it.
    const theme = page.locator("li.entry.action", { hasText: "cool-theme" });
    await theme.waitFor();
    expect(await theme.locator(".why").textContent()).toMatch(/^Why: rule cool-theme .*msg\.metrics\.temp > 30/);
    await expect
      .poll(() => theme.locator(".lifecycle li").allTextContents())
      .toEqual([
        expect.stringMatching(/^proposed /),
        expect.stringMatching(/^delivered /),
        expect.stringMatching(/^applied /),
      ]);
    const prompt = page.locator("li.entry.action", { hasText: "ask-for-rating" });
    expect(await prompt.locator(".lifecycle li").last().textContent()).toMatch(/^declined /);

    // Charts of its metrics, drawn by uPlot.
    await page.locator('figure[data-metric="latency_ms"] canvas').waitFor();
    await page.locator('figure[data-metric="sentiment"] canvas').waitFor();
    await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
    // Sessions are many: leave them out of the timeline, as an agent after the story would.
    await page.getByRole("checkbox", { name: "Events" }).uncheck();
    await page.waitForFunction(
      () => document.querySelector("li.entry.event") === null && document.querySelector("li.entry.feedback") !== null,
    );
    expect(await page.locator("li.entry.action").count()).toBe(2);
    await page.screenshot({ path: path.join(shots, "dashboard-device.png"), fullPage: true });

    // Live: the customer writes again (an independent MQTT client) and the page shows it without a reload.
    const again = "Still freezing, awful. I want a refund.";
    const pub = await run("mosquitto_pub", [
      "-h",
      "127.0.0.1",
      "-p",
      new URL(t.mqttUrl).port,
      "-i",
      `${TROUBLED}:pub`,
      "-u",
      TROUBLED,
      "-P",
      tokens.get(TROUBLED)!,
      "-q",
      "1",
      "-t",
      `devices/${TROUBLED}/feedback`,
      "-m",
      JSON.stringify({ subject: "cust-maya", rating: 1, text: again }),
    ]);
    expect(pub.code).toBe(0);
    await page.locator("li.entry.feedback", { hasText: again }).waitFor({ timeout: 45_000 });
    await expect.poll(() => sentiment.locator("blockquote").textContent(), { timeout: 45_000 }).toBe(again);

    // Only the refused sign-in, which the browser logs as a failed request.
    expect(problems).toEqual([expect.stringMatching(/status of 401/)]);
    await page.close();
  }, 180_000);

  it("works on a phone-width screen and from the keyboard", async () => {
    const { page, problems } = watch(await browser.context.newPage());
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${t.http}/dashboard/`);
    await page.evaluate((key) => sessionStorage.setItem("refeed.supportKey", key), supportKey);
    await page.reload();
    await page.waitForFunction(
      (id) => document.querySelector<HTMLElement>("tbody tr")?.dataset.device === id,
      TROUBLED,
    );
    const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(await overflow()).toBeLessThanOrEqual(0);

    // The first Tab reaches the skip link, and focus is visible wherever it goes.
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Skip to content");
    for (let i = 0; i < 6; i += 1) {
      await page.keyboard.press("Tab");
      const outline = await page.evaluate(() => {
        const el = document.activeElement as HTMLElement;
        const style = getComputedStyle(el);
        return { tag: el.tagName, outline: style.outlineStyle, width: parseFloat(style.outlineWidth) };
      });
      expect(outline.outline, `focus on ${outline.tag}`).not.toBe("none");
      expect(outline.width).toBeGreaterThanOrEqual(2);
    }

    await page.goto(`${t.http}/dashboard/#/device/${TROUBLED}`);
    await page.locator("li.entry.feedback", { hasText: COMPLAINT }).waitFor();
    await page.locator('figure[data-metric="latency_ms"] canvas').waitFor();
    expect(await overflow()).toBeLessThanOrEqual(0);

    // Signing out forgets the key.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Support key").waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem("refeed.supportKey"))).toBeNull();
    expect(problems).toEqual([]);
    await page.close();
  }, 120_000);

  it("charts say what they show: one range for all, a point every 5 minutes over 24 hours, sentiment green and red, words where there are no points", async () => {
    // A kiosk that only ever got feedback: no telemetry to draw.
    const quiet = await provision(t, { id: "kiosk-quiet", kind: "kiosk" });
    const res = await fetch(`${t.http}/api/ingest/feedback`, {
      method: "POST",
      headers: { authorization: `Bearer ${quiet.token}`, "content-type": "application/json" },
      body: JSON.stringify({ rating: 5, text: "Great, quick and easy." }),
    });
    expect(res.status).toBe(200);
    await ingestCaughtUp(t);

    const { page, problems } = watch(await browser.context.newPage());
    await page.goto(`${t.http}/dashboard/`);
    await page.evaluate((key) => sessionStorage.setItem("refeed.supportKey", key), supportKey);
    await page.goto(`${t.http}/dashboard/#/device/${TROUBLED}`);
    const latency = page.locator('figure[data-metric="latency_ms"]');
    await latency.locator("canvas").waitFor();
    // 72 points over the day, each in a 5-minute bucket, on the range's axis.
    expect(await latency.locator("figcaption").textContent()).toMatch(
      /^latency_ms mean per 5 minutes, shaded from minimum to maximum; latest \d+, range \d+ to \d+$/,
    );
    const sentiment = page.locator('figure[data-metric="sentiment"]');
    await sentiment.locator("canvas").waitFor();
    // The day's texts, and the complaint the live-update test above sent: one positive, the rest negative.
    const counts =
      /from \u22121 \(negative, red\) to 1 \(positive, green\): (\d+) texts, 1 positive, (\d+) negative$/.exec(
        (await sentiment.locator("figcaption").textContent()) ?? "",
      );
    expect(counts).not.toBeNull();
    expect(Number(counts![2])).toBe(Number(counts![1]) - 1);
    // What is drawn: green dots for the positive text, red ones for the negative (uPlot paints a canvas).
    const colours = () =>
      sentiment.locator("canvas").evaluate((canvas: HTMLCanvasElement) => {
        const { data } = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height);
        let green = 0;
        let red = 0;
        for (let i = 0; i < data.length; i += 4) {
          const [r, g, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
          if (Math.abs(r - 0x1e) < 24 && Math.abs(g - 0x6b) < 24 && Math.abs(b - 0x3a) < 24) green += 1;
          if (Math.abs(r - 0x9b) < 24 && Math.abs(g - 0x2c) < 24 && Math.abs(b - 0x2c) < 24) red += 1;
        }
        return { green, red };
      });
    await expect.poll(async () => (await colours()).green).toBeGreaterThan(0);
    expect((await colours()).red).toBeGreaterThan((await colours()).green);

    await page.goto(`${t.http}/dashboard/#/device/kiosk-quiet`);
    await page.locator('figure[data-metric="sentiment"] canvas').waitFor();
    await page.locator(".chart-empty", { hasText: "No telemetry from this device in the last 24 hours." }).waitFor();
    expect(await page.locator("figure.chart").count()).toBe(1);
    expect(problems).toEqual([]);
    await page.close();
  });

  it("serves the page with a strict content security policy and little to download", async () => {
    const res = await fetch(`${t.http}/dashboard/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect((await fetch(`${t.http}/dashboard`, { redirect: "manual" })).headers.get("location")).toBe("dashboard/");
    let bytes = 0;
    for (const file of [
      "",
      "app.js",
      "api.js",
      "dom.js",
      "fleet.js",
      "device.js",
      "charts.js",
      "app.css",
      "vendor/uPlot.iife.min.js",
      "vendor/uPlot.min.css",
    ]) {
      const r = await fetch(`${t.http}/dashboard/${file}`);
      expect(r.status, file).toBe(200);
      bytes += (await r.arrayBuffer()).byteLength;
    }
    // Everything the page loads, uncompressed: no framework-sized bundle.
    expect(bytes).toBeLessThan(150_000);
    // Revalidated with its ETag: an unchanged file costs a 304. (node:http, since fetch adds no-cache to a conditional request.)
    const etag = (await fetch(`${t.http}/dashboard/app.js`)).headers.get("etag")!;
    const status = await new Promise<number | undefined>((resolve, reject) =>
      get(
        `${t.http}/dashboard/app.js`,
        { headers: { "if-none-match": etag } },
        (r) => (r.resume(), resolve(r.statusCode)),
      ).on("error", reject),
    );
    expect(status).toBe(304);
  });
});

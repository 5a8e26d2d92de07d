// Drives promfed's web UI in headless Chromium (Debian's /usr/bin/chromium)
// through playwright-core, and prints what the pages show as one JSON line.
// The Rust test (tests/ui_browser.rs) decides what is right; this script
// only acts and reads.
//
//   node tests/ui/browser.cjs '{"url": "...", "shots": "DIR", "actions": [...]}'
//
// Actions: {"do": "instant", "query", "time"}, {"do": "range", "query",
// "start", "end", "step"}, {"do": "stores", "probe": true}, {"do": "cache"},
// {"do": "analyze", "template", "args", "from", "to"};
// each may name a "shot" (a PNG written under "shots").
"use strict";

const path = require("path");
const { chromium } = require(process.env.PLAYWRIGHT_CORE || "playwright-core");

const TIMEOUT_MS = 20000;

async function queryPage(page, base, a) {
  await page.goto(`${base}/#/query`);
  await page.fill("#expr", a.query);
  await page.selectOption("#mode", a.do);
  if (a.do === "instant") {
    await page.fill("#time", a.time || "");
  } else {
    await page.fill("#start", a.start);
    await page.fill("#end", a.end);
    await page.fill("#step", a.step || "");
  }
  await page.click("#run");
  await page.waitForFunction(() => {
    const s = document.querySelector("#status").textContent;
    return s !== "" && !s.startsWith("running");
  });
  return page.evaluate(() => ({
    status: document.querySelector("#status").textContent,
    backends: document.querySelector("#backends").textContent,
    error: document.querySelector("#error").hidden ? "" : document.querySelector("#error").textContent,
    warnings: [...document.querySelectorAll("#warnings li")].map((li) => li.textContent),
    rows: [...document.querySelectorAll("#result tbody tr")].map((tr) => ({
      labels: tr.querySelector(".labels").textContent,
      value: tr.querySelector(".value").textContent,
    })),
    paths: [...document.querySelectorAll("#graph path.series")].map((p) => ({
      title: p.querySelector("title").textContent,
      points: (p.getAttribute("d").match(/[ML]/g) || []).length,
    })),
  }));
}

async function storesPage(page, base, a) {
  await page.goto(`${base}/#/stores`);
  await page.waitForFunction(() => document.querySelector("#stores-status").textContent.includes(" of "));
  if (a.probe) {
    await page.evaluate(() => (document.querySelector("#stores-status").textContent = ""));
    await page.click("#probe");
    await page.waitForFunction(() => document.querySelector("#stores-status").textContent.includes(" of "));
  }
  return page.evaluate(() => ({
    status: document.querySelector("#stores-status").textContent,
    stores: [...document.querySelectorAll("#stores tbody tr")].map((tr) => ({
      name: tr.dataset.name,
      state: tr.querySelector(".state").textContent,
      lastError: tr.querySelector(".last-error").textContent,
      latency: tr.querySelector(".latency").textContent,
    })),
  }));
}

async function cachePage(page, base) {
  await page.goto(`${base}/#/cache`);
  await page.waitForFunction(() => document.querySelector("#cache-summary").textContent !== "");
  return page.evaluate(() => ({
    summary: document.querySelector("#cache-summary").textContent,
    requests: [...document.querySelectorAll("#cache-requests tbody tr")].map((tr) => ({
      kind: tr.dataset.kind,
      hit: Number(tr.querySelector(".hit").textContent),
      miss: Number(tr.querySelector(".miss").textContent),
      evaluations: Number(tr.querySelector(".evaluations").textContent),
    })),
    warm: [...document.querySelectorAll("#warm li")].map((li) => li.textContent),
    cells: [...document.querySelectorAll("#cells tbody tr")].map((tr) => ({
      query: tr.children[0].textContent,
      time: tr.children[1].textContent,
      evaluations: Number(tr.children[2].textContent),
    })),
  }));
}

async function analyzePage(page, base, a) {
  await page.goto(`${base}/#/analyze`);
  await page.fill("#template", a.template);
  await page.fill("#args", a.args);
  await page.fill("#from", a.from);
  await page.fill("#to", a.to);
  await page.click("#analyze-run");
  await page.waitForFunction(() => {
    const s = document.querySelector("#analyze-phase").textContent;
    return (s !== "" && !s.startsWith("running")) || !document.querySelector("#analyze-error").hidden;
  });
  return page.evaluate(() => ({
    phase: document.querySelector("#analyze-phase").dataset.phase || "",
    error: document.querySelector("#analyze-error").hidden ? "" : document.querySelector("#analyze-error").textContent,
    rows: [...document.querySelectorAll("#measurements tbody tr")].map((tr) => ({
      atMs: Number(tr.dataset.atMs),
      phase: tr.querySelector(".phase").textContent,
      value: tr.querySelector(".value").textContent,
    })),
  }));
}

async function main() {
  const plan = JSON.parse(process.argv[2]);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: TIMEOUT_MS,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const out = [];
  const pageErrors = [];
  try {
    const context = await browser.newContext({
      viewport: { width: 1100, height: 820 },
      httpCredentials: plan.user ? { username: plan.user, password: plan.password } : undefined,
    });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT_MS);
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    for (const a of plan.actions) {
      let seen;
      if (a.do === "instant" || a.do === "range") seen = await queryPage(page, plan.url, a);
      else if (a.do === "stores") seen = await storesPage(page, plan.url, a);
      else if (a.do === "cache") seen = await cachePage(page, plan.url);
      else if (a.do === "analyze") seen = await analyzePage(page, plan.url, a);
      else throw new Error(`unknown action ${a.do}`);
      if (a.shot) await page.screenshot({ path: path.join(plan.shots, a.shot), fullPage: true });
      out.push(seen);
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify({ results: out, pageErrors }) + "\n");
}

main().catch((e) => {
  process.stderr.write(`browser.cjs: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});

// What a call costs each person (scripts/bench-media runs this against a release
// server with Janus): for 4 and 6 people in the mesh and through the SFU (end to end
// encrypted), and for 4 through the SFU without the frame encryption, the upload
// per person (every outbound RTP byte, from getStats), the video frames decoded
// per second per received stream, and Chromium's CPU (every Chromium process, from
// /proc) per person, over BENCH_SECONDS after the call settles.
//
//   BENCH_SECONDS=10 node tests/js/media_bench.mjs http://localhost:PORT ARTIFACT_DIR

import { readFileSync, readdirSync } from "node:fs";
import {
  acceptInvite, base, createRoom, invite, joinThroughSfu, joinWith, openCall, participant, receivesThroughSfu, run,
  setMedia,
} from "./browser_kit.mjs";

const SECONDS = Number(process.env.BENCH_SECONDS || 10);

/** CPU seconds used so far by every Chromium process. */
function chromiumCpu() {
  let ticks = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      if (!/chrom/i.test(stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")))) continue;
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]); // utime, stime
    } catch {
      /* the process ended */
    }
  }
  return ticks / 100;
}

const pageStats = (page) =>
  page.evaluate(async () => {
    let sent = 0, decoded = 0, streams = 0;
    for (const pc of window.__pcs.filter((pc) => pc.connectionState === "connected")) {
      (await pc.getStats()).forEach((s) => {
        if (s.type === "outbound-rtp") sent += (s.bytesSent || 0) + (s.headerBytesSent || 0);
        if (s.type === "inbound-rtp" && s.kind === "video") {
          decoded += s.framesDecoded || 0;
          streams++;
        }
      });
    }
    return { sent, decoded, streams };
  });

let host;
async function scenario(mode, n) {
  await host.goto(`${base}/rooms`);
  const room = (await createRoom(host, `${mode} ${n}`)).split("/").pop();
  if (mode !== "mesh") await setMedia(host, "sfu");
  const pages = [];
  for (let i = 1; i < n; i++) {
    const link = await invite(host, `P${i}`);
    const page = await participant(`${mode}${n}-${i}`);
    await acceptInvite(page, link);
    pages.push(page);
  }
  pages.unshift(await host.context().newPage());
  for (const page of pages) {
    if (mode === "sfu-plain") {
      await page.goto(`${base}/keys`);
      await page.evaluate(joinThroughSfu, room);
    } else {
      await openCall(page, room);
      await joinWith(page, "#join-browser-key");
    }
  }
  for (const page of pages) await receivesThroughSfu(page, n - 1, `${mode} with ${n}`, { tiles: mode !== "sfu-plain" });
  await new Promise((r) => setTimeout(r, 3000));
  const before = await Promise.all(pages.map(pageStats));
  const cpu0 = chromiumCpu();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const cpu1 = chromiumCpu();
  const after = await Promise.all(pages.map(pageStats));
  const upload = after.map((a, i) => ((a.sent - before[i].sent) * 8) / SECONDS / 1000);
  const fps = after.map((a, i) => (a.decoded - before[i].decoded) / SECONDS / Math.max(1, a.streams));
  const mean = (xs) => xs.reduce((s, x) => s + x, 0) / xs.length;
  const row = {
    mode, people: n,
    uploadKbitPerPerson: Math.round(mean(upload)),
    decodedFpsPerStream: Math.round(mean(fps) * 10) / 10,
    cpuPerPerson: Math.round(((cpu1 - cpu0) / SECONDS / n) * 1000) / 1000,
  };
  console.log(JSON.stringify(row));
  for (const page of pages) {
    if (page.context() === host.context()) await page.close();
    else await page.context().close();
  }
  return row;
}

await run("media bench", async () => {
  host = await participant("host");
  await createRoom(host, "warm-up");
  const rows = [];
  for (const [mode, n] of [["mesh", 4], ["sfu", 4], ["sfu-plain", 4], ["mesh", 6], ["sfu", 6]]) rows.push(await scenario(mode, n));
  console.log(`\n| call | upload per person | decoded video per stream | Chromium CPU per person |`);
  console.log(`|---|---:|---:|---:|`);
  for (const r of rows) {
    const what = { mesh: "mesh", sfu: "SFU, end-to-end encrypted", "sfu-plain": "SFU, frames not encrypted" }[r.mode];
    console.log(`| ${r.people} people, ${what} | ${r.uploadKbitPerPerson} kbit/s | ${r.decodedFpsPerStream} frames/s | ${Math.round(r.cpuPerPerson * 100)}% of a core |`);
  }
});

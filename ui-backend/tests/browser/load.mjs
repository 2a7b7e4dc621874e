// Measures how the page keeps up with live flows: node load.mjs <url> <seconds> <sample-seconds>
//
// Opens the page, samples window.hubbleUi.stats and the JS heap (CDP
// Runtime.getHeapUsage, after a forced GC at the first and last sample) every
// <sample-seconds>, prints one "SAMPLE {json}" line per sample and a final
// "SUMMARY {json}" line.
import { launch } from './chromium.mjs';

const [url, secondsArg, sampleArg] = process.argv.slice(2);
if (!url) {
  console.error('usage: node load.mjs <url> <seconds> <sample-seconds>');
  process.exit(2);
}
const seconds = Number(secondsArg || 20);
const every = Number(sampleArg || 1);
/** Samples before this many seconds are warm-up and left out of the averages. */
const WARMUP_S = Math.min(3, seconds / 4);

const { page, context, close } = await launch();
const cdp = await context.newCDPSession(page);
await cdp.send('HeapProfiler.enable');
const heap = async (gc) => {
  if (gc) await cdp.send('HeapProfiler.collectGarbage');
  const { usedSize, totalSize } = await cdp.send('Runtime.getHeapUsage');
  return { usedMB: usedSize / 1048576, totalMB: totalSize / 1048576 };
};
const read = () => page.evaluate(() => ({ ...window.hubbleUi.stats,
  rows: document.querySelectorAll('#flow-rows tr').length,
  domNodes: document.getElementsByTagName('*').length }));

await page.goto(url, { waitUntil: 'domcontentloaded' });
await page.waitForFunction(() => window.hubbleUi && window.hubbleUi.stats.updates > 0, null, { timeout: 20000 });
const startHeap = await heap(true);
let prev = await read();
let prevAt = Date.now();
const t0 = prevAt;
const samples = [];
while (Date.now() - t0 < seconds * 1000) {
  await new Promise((r) => setTimeout(r, every * 1000));
  const last = Date.now() - t0 >= seconds * 1000;
  const now = await read();
  const at = Date.now();
  const dt = (at - prevAt) / 1000;
  const h = await heap(last);
  const sample = {
    t: Math.round((at - t0) / 1000),
    flowsPerS: (now.flowsReceived - prev.flowsReceived) / dt,
    rowsPerS: (now.rowsRendered - prev.rowsRendered) / dt,
    updatesPerS: (now.updates - prev.updates) / dt,
    renderMsPerS: (now.renderMs - prev.renderMs) / dt,
    lagMs: now.lastLagMs,
    missedFlows: now.missedFlows,
    skippedFlows: now.skippedFlows,
    rows: now.rows,
    domNodes: now.domNodes,
    heapUsedMB: h.usedMB,
    heapTotalMB: h.totalMB,
  };
  samples.push(sample);
  console.log('SAMPLE ' + JSON.stringify(sample));
  prev = now;
  prevAt = at;
}
const steady = samples.filter((s) => s.t > WARMUP_S);
const avg = (k) => steady.reduce((a, s) => a + s[k], 0) / Math.max(1, steady.length);
const lags = steady.map((s) => s.lagMs).sort((a, b) => a - b);
const last = samples[samples.length - 1];
console.log('SUMMARY ' + JSON.stringify({
  seconds,
  flowsPerS: avg('flowsPerS'),
  rowsPerS: avg('rowsPerS'),
  updatesPerS: avg('updatesPerS'),
  renderMsPerS: avg('renderMsPerS'),
  lagMsMedian: lags[Math.floor(lags.length / 2)] ?? 0,
  lagMsMax: lags[lags.length - 1] ?? 0,
  missedFlows: last.missedFlows,
  skippedFlows: last.skippedFlows,
  heapStartMB: startHeap.usedMB,
  heapEndMB: last.heapUsedMB,
  domNodes: last.domNodes,
}));
await close();

// Browser test of hubble-ui: node run.mjs <url> <artifact-dir>
//
// Prints "STEP ..." lines as it goes and "WAITING_FOR_DROPS" when the page shows the
// demo before the policy; the Rust test then sends the policy drops. Exits non-zero on
// the first failed check, with a screenshot of the page at that moment.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launch } from './chromium.mjs';

const [url, artifacts] = process.argv.slice(2);
if (!url || !artifacts) {
  console.error('usage: node run.mjs <url> <artifact-dir>');
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
const WAIT = 20_000;
const RED = 'rgb(229, 72, 77)';
const { page, close } = await launch();
const errors = [];
page.on('pageerror', (err) => errors.push(String(err)));
// The page checks filters with a request that answers 400 for a bad one; that is expected.
page.on('console', (msg) => {
  if (msg.type() === 'error' && !msg.text().includes('status of 400')) errors.push(msg.text());
});
const shot = (name) => page.screenshot({ path: join(artifacts, name), fullPage: false });
const step = (text) => console.log('STEP ' + text);
const edge = (from, to) =>
  `g.edge[data-source="default/${from}"][data-destination="default/${to}"][data-port="80"]`;
const SERVICE = 'service:default/deathstar';
const serviceEdge = (from, to) => `g.edge[data-source="${from}"][data-destination="${to}"][data-port="80"]`;
const rowVerdicts = () => page.$$eval('#flow-rows tr', (rows) => rows.map((r) => r.dataset.verdict));

// Every box of the map is in view, unless the map is so large that it is drawn at its
// smallest scale, and then the pane scrolls to it. Returns a problem or null.
const mapFitProblem = () => page.evaluate(() => {
  const pane = document.querySelector('#map-scroll');
  const view = pane.getBoundingClientRect();
  const nodes = [...document.querySelectorAll('g.node')];
  if (nodes.length === 0) return 'no boxes on the map';
  const scale = window.hubbleUi.stats.mapScale;
  if (scale <= 0.5) {
    return pane.scrollWidth > pane.clientWidth || pane.scrollHeight > pane.clientHeight ? null
      : `map drawn at its smallest scale ${scale} but the pane does not scroll`;
  }
  const out = nodes.filter((n) => {
    const r = n.getBoundingClientRect();
    return r.left < view.left - 1 || r.right > view.left + pane.clientWidth + 1 ||
      r.top < view.top - 1 || r.bottom > view.top + pane.clientHeight + 1;
  });
  return out.length ? `boxes out of view at scale ${scale.toFixed(2)}: ` +
    out.map((n) => n.dataset.name).join(', ') : null;
});

// Labels of parallel edges (one source and destination, several ports or protocols)
// must not cover each other. Returns the overlapping pairs.
const overlappingLabels = () => page.evaluate(() => {
  const labels = [...document.querySelectorAll('g.edge-label')].map((g) => ({
    pair: g.dataset.source + ' -> ' + g.dataset.destination,
    what: `${g.dataset.protocol}/${g.dataset.port}`,
    r: g.querySelector('rect').getBoundingClientRect(),
  }));
  const found = [];
  labels.forEach((a, i) => labels.slice(i + 1).forEach((b) => {
    if (a.pair === b.pair && a.r.left < b.r.right && b.r.left < a.r.right &&
      a.r.top < b.r.bottom && b.r.top < a.r.bottom) {
      found.push(`${a.pair} ${a.what} / ${b.what}`);
    }
  }));
  return found;
});

try {
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  for (const name of ['deathstar', 'tiefighter', 'xwing']) {
    await page.waitForSelector(`g.node[data-name="${name}"]`, { timeout: WAIT });
  }
  step('boxes deathstar, tiefighter and xwing are on the map');
  const anonymous = await page.$$eval('g.node', (nodes) =>
    nodes.map((n) => n.dataset.name).filter((name) => /^identity-/.test(name)));
  if (anonymous.length) throw new Error(`anonymous boxes on the map: ${anonymous}`);
  await page.waitForSelector(`${edge('xwing', 'deathstar')}[data-verdict="forwarded"]`, { timeout: WAIT });
  await page.waitForSelector(`${edge('tiefighter', 'deathstar')}[data-verdict="forwarded"]`, { timeout: WAIT });
  await page.waitForFunction(() => document.querySelector('#connection').dataset.state === 'connected',
    null, { timeout: WAIT });
  step('xwing -> deathstar is forwarded (green), header says connected');
  // The deathstar service is a box of its own, marked as a service, between the ships
  // and the deathstar pods.
  await page.waitForSelector(`g.node.service[data-id="${SERVICE}"][data-kind="service"]`, { timeout: WAIT });
  const serviceText = await page.$eval(`g.node[data-id="${SERVICE}"]`, (g) => g.textContent);
  if (!serviceText.includes('service')) throw new Error(`the service box does not say so: ${serviceText}`);
  for (const [from, to] of [['default/tiefighter', SERVICE], ['default/xwing', SERVICE], [SERVICE, 'default/deathstar']]) {
    await page.waitForSelector(serviceEdge(from, to), { timeout: WAIT });
  }
  const backendCounts = await page.$eval(`${serviceEdge(SERVICE, 'default/deathstar')} title`, (t) => t.textContent);
  // The backend edge keeps the verdicts of the flows routed through the service: with
  // the scripted server its forwarded and dropped flows; in a lab the datapath's
  // post-xlate-fwd (TRANSLATED) flows, the ones that name the service after translation.
  if (!/\b[1-9]\d* (forwarded|dropped|translated)\b/.test(backendCounts)) {
    throw new Error(`service -> deathstar lost its verdict counts: ${backendCounts}`);
  }
  step(`the deathstar service box sits between the ships and the deathstar pods (${backendCounts.split('\n')[1]})`);
  await shot('01-before-policy.png');

  console.log('WAITING_FOR_DROPS');
  await page.waitForSelector(`${edge('xwing', 'deathstar')}[data-verdict="dropped"]`, { timeout: WAIT });
  const stroke = await page.$eval(`${edge('xwing', 'deathstar')} path.line`,
    (p) => getComputedStyle(p).stroke);
  if (stroke !== RED) throw new Error(`xwing -> deathstar is drawn in ${stroke}, expected red ${RED}`);
  const tieVerdict = await page.$eval(edge('tiefighter', 'deathstar'), (g) => g.dataset.verdict);
  if (tieVerdict !== 'forwarded') throw new Error(`tiefighter -> deathstar turned ${tieVerdict}`);
  step(`xwing -> deathstar turned dropped (stroke ${stroke}); tiefighter -> deathstar still forwarded`);
  const fit = await mapFitProblem();
  if (fit) throw new Error(fit);
  const overlaps = await overlappingLabels();
  if (overlaps.length) throw new Error(`edge labels cover each other: ${overlaps.join('; ')}`);
  step('every box is in view and no edge label covers another of its pair');
  await shot('02-after-policy.png');

  const before = await rowVerdicts();
  if (!before.includes('FORWARDED') || !before.includes('DROPPED')) {
    throw new Error(`table should hold both verdicts before filtering: ${before}`);
  }
  await page.selectOption('select[name="verdict"]', 'DROPPED');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#flow-rows tr')];
    return rows.length > 0 && rows.every((r) => r.dataset.verdict === 'DROPPED');
  }, null, { timeout: WAIT });
  const after = await rowVerdicts();
  if (after.length >= before.length) throw new Error(`table did not narrow: ${before.length} -> ${after.length}`);
  step(`verdict filter DROPPED narrowed the table from ${before.length} to ${after.length} rows`);
  // Rows name their event type as `hubble observe` does, and a policy verdict's deny
  // reads DENIED, so the verdict and the drop event of one packet are told apart.
  const typed = await page.$$eval('#flow-rows tr', (rows) => rows.map((r) => ({
    type: r.dataset.type || '',
    shown: r.querySelector('td.type') ? r.querySelector('td.type').textContent : '',
    word: r.querySelector('.badge') ? r.querySelector('.badge').textContent : '',
  })));
  const untyped = typed.filter((r) => !r.type || r.shown !== r.type);
  if (untyped.length) throw new Error(`rows without an event type: ${JSON.stringify(untyped.slice(0, 3))}`);
  const verdictRows = typed.filter((r) => r.type.startsWith('policy-verdict:'));
  const wrong = verdictRows.filter((r) => r.word !== 'DENIED');
  if (wrong.length) throw new Error(`dropped policy verdicts not shown as DENIED: ${JSON.stringify(wrong[0])}`);
  const dropRows = typed.filter((r) => !r.type.startsWith('policy-verdict:'));
  if (dropRows.some((r) => r.word !== 'DROPPED')) throw new Error('drop events not shown as DROPPED');
  step(`${verdictRows.length} policy-verdict rows read DENIED, ${dropRows.length} drop rows read DROPPED`);
  await shot('03-filter-dropped.png');

  await page.click('#clear');
  // The map is redrawn live; an element caught between two redraws is retried.
  for (let attempt = 1; ; attempt++) {
    try {
      // Its label: the middle of the line's bounding box may be covered by a box
      // (the deathstar service sits between the ships and the deathstar pods).
      await page.click(edge('tiefighter', 'deathstar').replace('g.edge', 'g.edge-label'), { timeout: 2000 });
      break;
    } catch (err) {
      if (attempt >= 5) throw err;
      await page.waitForTimeout(200);
    }
  }
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#flow-rows tr')];
    return document.querySelector('input[name="from_pod"]').value === 'default/tiefighter' &&
      rows.length > 0 && rows.every((r) => r.flow.source.pod_name === 'tiefighter');
  }, null, { timeout: WAIT });
  step('clicking the tiefighter -> deathstar edge filtered the table to its flows');
  await page.click('#flow-rows tr:first-child');
  await page.waitForSelector('#detail:not(.hidden)', { timeout: WAIT });
  const detail = await page.textContent('#detail-json');
  if (!detail.includes('"pod_name": "tiefighter"')) throw new Error('detail panel lacks the flow JSON');
  step('the detail panel shows the selected flow as JSON');
  await shot('04-edge-and-detail.png');

  await page.click('#clear');
  await page.click('g.node[data-name="xwing"]');
  await page.waitForFunction(() => document.querySelector('input[name="pod"]').value === 'default/xwing' &&
    [...document.querySelectorAll('#flow-rows tr')].every((r) =>
      r.flow.source.pod_name === 'xwing' || r.flow.destination.pod_name === 'xwing'), null, { timeout: WAIT });
  step('clicking the xwing box filtered the table to xwing');

  await page.click('#clear');
  await page.click(`g.node[data-id="${SERVICE}"]`);
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#flow-rows tr')];
    return document.querySelector('input[name="to_service"]').value === 'default/deathstar' &&
      rows.length > 0 && rows.every((r) => r.flow.destination_service &&
        r.flow.destination_service.name === 'deathstar');
  }, null, { timeout: WAIT });
  step('clicking the service box filtered the table to flows to the service');

  await page.click('#clear');
  await page.setViewportSize({ width: 900, height: 640 });
  // The map follows its pane's size on the next frames.
  let narrowFit = 'not checked';
  for (const until = Date.now() + 5000; narrowFit && Date.now() < until;) {
    await page.waitForTimeout(100);
    narrowFit = await mapFitProblem();
  }
  if (narrowFit) throw new Error(`in a 900x640 window: ${narrowFit}`);
  const scale = await page.evaluate(() => window.hubbleUi.stats.mapScale);
  step(`in a 900x640 window the map is scaled to ${scale.toFixed(2)} and every box is in reach`);
  await shot('06-narrow-window.png');
  await page.setViewportSize({ width: 1440, height: 960 });

  await page.click('#clear');
  await page.fill('input[name="port"]', 'eighty');
  await page.waitForSelector('#filter-error:not(.hidden)', { timeout: WAIT });
  const message = await page.textContent('#filter-error');
  if (!message.includes('eighty')) throw new Error(`filter error does not name the value: ${message}`);
  step(`a bad port shows: ${message}`);
  await shot('05-bad-filter.png');

  if (errors.length) throw new Error('page errors: ' + errors.join('; '));
  console.log('PASS browser checks');
  await close();
  process.exit(0);
} catch (err) {
  console.log('FAIL ' + (err && err.message ? err.message : err));
  await shot('failure.png').catch(() => {});
  await close();
  process.exit(1);
}

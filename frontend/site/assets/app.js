// Softy Pinko: fills #dynamic-content from the API and draws the load-balancer panel.
//
// The API base is '' (same origin, which is how the load balancer serves us) unless
// the page says otherwise: the `?api=http://host:port` query parameter, or a
// `data-api-base` attribute on <body> or <html>. That is the direct, cross-origin
// (CORS) case; the server's CSP connect-src must then allow that origin.
(() => {
  'use strict';

  const BURST_SIZE = 12;

  function apiBase() {
    const fromQuery = new URLSearchParams(location.search).get('api');
    const fromMarkup = document.body.dataset.apiBase || document.documentElement.dataset.apiBase;
    const raw = fromQuery || fromMarkup || '';
    if (!raw) return '';
    try {
      const url = new URL(raw, location.href);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return '';
      return (url.origin + url.pathname).replace(/\/+$/, '');
    } catch {
      return '';
    }
  }

  const base = apiBase();

  // A sentence a visitor can read, whatever went wrong.
  function explain(error) {
    if (error && error.status) return `the API answered ${error.status}`;
    return 'the API could not be reached';
  }

  async function call(path) {
    const response = await fetch(base + path, { cache: 'no-store' });
    if (!response.ok) {
      const error = new Error(`HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return response;
  }

  async function greet() {
    const target = document.getElementById('dynamic-content');
    try {
      const text = await (await call('/api/hello')).text();
      target.textContent = text;
      target.dataset.state = 'ok';
    } catch (error) {
      target.textContent = `Sorry, no greeting today: ${explain(error)}.`;
      target.dataset.state = 'error';
    }
  }

  async function whoami() {
    try {
      const body = await (await call('/api/whoami')).json();
      return typeof body.replica === 'string' && body.replica ? body.replica : 'unnamed';
    } catch {
      return 'failed';
    }
  }

  function drawBars(counts, total) {
    const list = document.getElementById('bars');
    const rows = [...counts.entries()].sort((a, b) => a[0].localeCompare(b[0]));
    list.replaceChildren(...rows.map(([replica, count]) => {
      const item = document.createElement('li');
      item.className = 'bar';
      item.dataset.replica = replica;
      item.dataset.count = String(count);
      const label = document.createElement('span');
      label.className = 'bar-label';
      label.textContent = replica === 'failed' ? 'failed requests' : replica;
      label.title = label.textContent;
      const track = document.createElement('span');
      track.className = 'bar-track';
      const fill = document.createElement('span');
      fill.className = 'bar-fill';
      track.append(fill);
      const number = document.createElement('span');
      number.className = 'bar-count';
      number.textContent = String(count);
      item.append(label, track, number);
      // Set after insertion so the width animates from zero (CSSOM: allowed by the CSP).
      requestAnimationFrame(() => { fill.style.width = `${(100 * count) / total}%`; });
      return item;
    }));
  }

  async function burst() {
    const button = document.getElementById('burst');
    const summary = document.getElementById('burst-summary');
    button.disabled = true;
    summary.textContent = `Sending ${BURST_SIZE} requests…`;
    const answers = await Promise.all(Array.from({ length: BURST_SIZE }, whoami));
    const counts = new Map();
    for (const replica of answers) counts.set(replica, (counts.get(replica) || 0) + 1);
    const failed = counts.get('failed') || 0;
    const replicas = counts.size - (failed ? 1 : 0);
    summary.textContent = `${BURST_SIZE} requests, answered by ${replicas} ` +
      `replica${replicas === 1 ? '' : 's'}${failed ? `, ${failed} failed` : ''}.`;
    summary.dataset.state = failed ? 'error' : 'ok';
    drawBars(counts, BURST_SIZE);
    button.disabled = false;
  }

  document.getElementById('api-base').textContent = base || 'same origin';
  document.getElementById('burst').addEventListener('click', burst);
  greet();
  // `?burst` fires one round at load: handy for demos and for the browser test.
  if (new URLSearchParams(location.search).has('burst')) burst();
})();

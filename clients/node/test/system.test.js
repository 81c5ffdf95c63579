'use strict';
// The Node clients against the whole Python system (admin web, relay, catalog worker): run by
// tests/e2e/test_node_clients.py on the e2e stack, or by hand against `make run`:
//   cd clients/node && npm test      (reads ../../.env for the admin's account and the ports)

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');

function dotenv() {
  const file = path.join(h.DIR, '..', '..', '.env');
  const values = {};
  if (!fs.existsSync(file)) return values;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) values[m[1]] = m[2];
  }
  return values;
}

const env = { ...dotenv(), ...process.env };
const ADMIN = env.ADMIN_URL || `http://127.0.0.1:${env.ADMIN_PORT || 8000}`;
const CATALOG = env.CATALOG_URL || `http://127.0.0.1:${env.CATALOG_PORT || 8001}`;
const AMQP_URL = env.AMQP_URL || env.CELERY_BROKER_URL || 'amqp://guest:guest@127.0.0.1:5672/';
const USER = env.ADMIN_USERNAME || env.DJANGO_SUPERUSER_USERNAME;
const PASSWORD = env.ADMIN_PASSWORD || env.DJANGO_SUPERUSER_PASSWORD;

async function http(method, url, { token, body } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Token ${token}`;
  const r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10000) });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

async function adminToken() {
  assert.ok(USER && PASSWORD, 'the admin account: ADMIN_USERNAME/ADMIN_PASSWORD or DJANGO_SUPERUSER_* in .env');
  const r = await http('POST', `${ADMIN}/api/auth/token/`, { body: { username: USER, password: PASSWORD } });
  assert.equal(r.status, 200, `token for ${USER} at ${ADMIN}: ${JSON.stringify(r.json)}`);
  return r.json.token;
}

test('an event from the Node producer is applied by the Python catalog worker', async () => {
  const id = String(2000000000 + crypto.randomInt(1000000000));
  const title = `Node lamp ${id}`;
  const r = await h.run('producer.js', ['--id', id, '--title', title, '--price', '20.00', '--url', AMQP_URL]);
  assert.equal(r.code, 0, r.stderr);
  const got = await h.waitUntil(async () => {
    const p = await http('GET', `${CATALOG}/api/products/${id}/`);
    return p.status === 200 && p.json;
  }, { timeoutMs: 30000, message: `product ${id} in the catalog at ${CATALOG}` });
  assert.equal(got.title, title);
  assert.equal(got.price, '20.00');
  assert.equal(got.version, 1);
  const update = await h.run('producer.js', ['--type', 'updated', '--id', id, '--version', '2',
    '--title', `${title} v2`, '--price', '25.00', '--url', AMQP_URL]);
  assert.equal(update.code, 0, update.stderr);
  await h.waitUntil(async () => (await http('GET', `${CATALOG}/api/products/${id}/`)).json?.version === 2,
    { timeoutMs: 30000, message: `version 2 of ${id} in the catalog` });
});

test("the Node consumer receives the admin's HTTP writes through the relay and ends at the admin's versions", async (t) => {
  const queue = `node.system-${crypto.randomBytes(3).toString('hex')}`;
  const consumer = h.startConsumer(t, ['--url', AMQP_URL, '--queue', queue]);
  t.after(() => h.withChannel(AMQP_URL, async (ch) => {
    await ch.deleteQueue(queue);
    await ch.deleteQueue(`${queue}.dlq`);
    await ch.deleteExchange(`${queue}.dlx`);
  }).catch(() => {}));
  await h.waitUntil(() => consumer.lines().some((l) => l.msg === 'consuming'),
    { message: () => `the consumer to start:\n${consumer.output()}` });

  const token = await adminToken();
  const api = (method, p, body) => http(method, `${ADMIN}/api/products/${p}`, { token, body });
  const kept = await api('POST', '', { title: 'Node kept', price: '10.00', description: 'made over HTTP' });
  assert.equal(kept.status, 201, JSON.stringify(kept.json));
  const gone = await api('POST', '', { title: 'Node gone', price: '11.00' });
  assert.equal(gone.status, 201);
  for (const price of ['12.00', '13.00']) {
    assert.equal((await api('PATCH', `${kept.json.id}/`, { price })).status, 200);
  }
  assert.equal((await api('DELETE', `${gone.json.id}/`)).status, 204);
  const final = (await api('GET', `${kept.json.id}/`)).json;
  assert.equal(final.version, 3);

  const latest = (id) => {
    const mine = consumer.lines().filter((l) => l.id === id && l.msg === 'applied');
    return mine.length ? mine[mine.length - 1] : null;
  };
  await h.waitUntil(() => latest(kept.json.id)?.version === final.version
      && latest(gone.json.id)?.type === 'product.deleted',
  { timeoutMs: 30000, message: () => `the admin's versions at the consumer:\n${consumer.output()}` });
  assert.equal(latest(gone.json.id).version, gone.json.version + 1, 'the delete carries the next version');
  assert.ok(!consumer.lines().some((l) => l.msg === 'rejected'), consumer.output());
});

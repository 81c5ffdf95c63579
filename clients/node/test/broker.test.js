'use strict';
// Both CLIs against the real RabbitMQ, each test in a vhost of its own.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');

const lamp = ['--id', '9001', '--title', 'Lamp', '--price', '20.00'];

async function withProducts(url, bindQueue = null) {
  await h.withChannel(url, async (ch) => {
    await ch.assertExchange('products', 'topic', { durable: true });
    if (bindQueue) {
      await ch.assertQueue(bindQueue, { durable: true });
      await ch.bindQueue(bindQueue, 'products', 'product.#');
    }
  });
}

test('the producer exits non-zero with one line for each way a publish can fail', async (t) => {
  const { url } = await h.ownVhost(t);
  const noExchange = await h.run('producer.js', [...lamp, '--url', url]);
  assert.equal(noExchange.code, 3, noExchange.stderr);
  assert.match(noExchange.stderr, /^unroutable: exchange 'products' does not exist/);

  await withProducts(url);
  const unroutable = await h.run('producer.js', [...lamp, '--url', url]);
  assert.equal(unroutable.code, 3, unroutable.stderr);
  assert.match(unroutable.stderr, /^unroutable: no queue is bound .* 'product.created' \(312 NO_ROUTE\)\n$/);
  assert.equal(unroutable.stdout, '');

  const invalid = await h.run('producer.js', ['--id', '9001', '--title', 'Lamp', '--price', '20', '--url', url]);
  assert.equal(invalid.code, 2);
  assert.match(invalid.stderr, /^invalid event: \/data\/price/);

  const down = await h.run('producer.js', [...lamp, '--url', 'amqp://guest:guest@127.0.0.1:1/']);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /^broker unreachable at amqp:\/\/guest:\*\*\*@127.0.0.1:1\/: .*ECONNREFUSED/);
  assert.doesNotMatch(down.stderr, /guest:guest/, 'no password in the error');

  const refused = await h.run('producer.js', [...lamp, '--url', url.replace('guest:guest', 'guest:wrong')]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /ACCESS.REFUSED/);

  // a peer that accepts the connection and never answers (a black hole): bounded by --timeout
  const silent = net.createServer(() => {}).listen(0, '127.0.0.1');
  t.after(() => silent.close());
  await new Promise((r) => silent.once('listening', r));
  const hung = await h.run('producer.js', [...lamp, '--timeout', '2',
    '--url', `amqp://guest:guest@127.0.0.1:${silent.address().port}/`]);
  assert.equal(hung.code, 1, hung.stderr);
  assert.ok(hung.seconds < 8, `took ${hung.seconds} s`);
  assert.match(hung.stderr, /^broker unreachable/);
});

test('the producer publishes exactly the documented message, persistent and confirmed', async (t) => {
  const { url } = await h.ownVhost(t);
  await withProducts(url, 'seen');
  const ok = await h.run('producer.js', [...lamp, '--description', 'Warm light', '--url', url]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^confirmed product.created id=9001 version=1 event_id=[0-9a-f-]{36} task_id=/);
  const msg = await h.withChannel(url, (ch) => ch.get('seen', { noAck: true }));
  assert.ok(msg, 'the message reached the bound queue');
  assert.equal(msg.fields.exchange, 'products');
  assert.equal(msg.fields.routingKey, 'product.created');
  assert.equal(msg.properties.deliveryMode, 2);
  assert.equal(msg.properties.contentType, 'application/json');
  assert.equal(msg.properties.headers.task, 'catalog.apply_product_events');
  const [args, kwargs] = JSON.parse(msg.content.toString());
  assert.deepEqual(args, []);
  assert.equal(kwargs.events[0].data.description, 'Warm light');
  assert.notEqual(msg.properties.headers.id, kwargs.events[0].event_id);  // one message, one task id
});

test('the consumer applies by version, rejects malformed messages to its DLQ, and survives a dropped connection', async (t) => {
  const { vhost, url } = await h.ownVhost(t);
  await withProducts(url);
  const state = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'node-consumer-')), 'state.json');
  const queue = 'node.test';
  const consumer = h.startConsumer(t, ['--url', url, '--queue', queue, '--state', state]);
  await h.waitUntil(() => consumer.lines().some((l) => l.msg === 'consuming'),
    { message: () => `the consumer to start:\n${consumer.output()}` });
  const produce = async (...args) => {
    const r = await h.run('producer.js', [...args, '--url', url]);
    assert.equal(r.code, 0, r.stderr);
  };
  const outcomes = () => consumer.lines().filter((l) => ['applied', 'ignored', 'rejected'].includes(l.msg));

  await produce('--id', '1', '--title', 'Lamp', '--price', '20.00');
  await produce('--id', '1', '--title', 'Lamp', '--price', '20.00'); // duplicate
  await produce('--type', 'updated', '--id', '1', '--version', '3', '--title', 'Lamp v3', '--price', '21.00');
  await produce('--type', 'updated', '--id', '1', '--version', '2', '--title', 'Lamp v2', '--price', '21.00'); // late
  await h.waitUntil(() => outcomes().length >= 4, { message: () => consumer.output() });

  // malformed messages straight into its queue: each rejected into <queue>.dlq, none acked away
  const bad = [Buffer.from('not json'), Buffer.from('{}'), Buffer.from('[[],"x",{}]'), Buffer.from([0xc3, 0x28])];
  await h.withChannel(url, async (ch) => {
    for (const body of bad) {
      ch.publish('', queue, body, { contentType: 'application/json', persistent: true,
        headers: { task: 'catalog.apply_product_events', id: 'bad' } });
    }
    await ch.waitForConfirms();
  });
  await h.waitUntil(() => outcomes().filter((l) => l.msg === 'rejected').length === bad.length,
    { message: () => consumer.output() });
  const parked = await h.withChannel(url, async (ch) => {
    const got = [];
    await h.waitUntil(async () => {
      const m = await ch.get(`${queue}.dlq`, { noAck: true });
      if (m) got.push(m);
      return got.length === bad.length;
    }, { message: () => `${bad.length} messages in ${queue}.dlq (have ${got.length})` });
    return got;
  });
  assert.deepEqual(parked.map((m) => m.content.toString('hex')).sort(), bad.map((b) => b.toString('hex')).sort());
  for (const m of parked) assert.equal(m.properties.headers['x-death'][0].reason, 'rejected');

  // the broker drops the connection (as a restart does): the consumer reconnects and goes on
  assert.ok(h.closeConnections(vhost, `node consumer ${queue}`) >= 1, 'found the consumer connection');
  await h.waitUntil(() => consumer.lines().filter((l) => l.msg === 'consuming').length >= 2,
    { message: () => `a reconnect:\n${consumer.output()}` });
  await produce('--type', 'deleted', '--id', '1', '--version', '4', '--title', 'Lamp v3', '--price', '21.00');
  await produce('--type', 'updated', '--id', '1', '--version', '3', '--title', 'resurrected?', '--price', '21.00');
  await h.waitUntil(() => outcomes().length >= 4 + bad.length + 2, { message: () => consumer.output() });
  assert.equal(consumer.child.exitCode, null, 'the consumer is still running');

  const seen = outcomes().filter((l) => l.msg !== 'rejected').map((l) => `${l.msg} ${l.type} v${l.version}`);
  assert.deepEqual(seen, ['applied product.created v1', 'ignored product.created v1',
    'applied product.updated v3', 'ignored product.updated v2', 'applied product.deleted v4',
    'ignored product.updated v3']);
  assert.equal(await consumer.stop(), 0);
  const saved = JSON.parse(fs.readFileSync(state, 'utf8'));
  assert.deepEqual({ version: saved.products['1'].version, deleted: saved.products['1'].deleted },
    { version: 4, deleted: true });
});

test('a message that breaks the consumer state file is rejected into the DLQ and consuming goes on', async (t) => {
  const { url } = await h.ownVhost(t);
  await withProducts(url);
  const state = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'node-consumer-')), 'state.json');
  const queue = 'node.deep';
  const consumer = h.startConsumer(t, ['--url', url, '--queue', queue, '--state', state]);
  await h.waitUntil(() => consumer.lines().some((l) => l.msg === 'consuming'),
    { message: () => consumer.output() });
  // valid by the contract (data may carry extra properties), too deep for JSON.stringify
  const contract = require('../lib/contract');
  const event = contract.buildEvent({ id: 77, title: 'Deep', price: '1.00' });
  const deep = '['.repeat(20000) + ']'.repeat(20000);
  const body = Buffer.from(`[[], {"events": [${JSON.stringify(event).slice(0, -2)}, "x": ${deep}}}]}, null]`);
  await h.withChannel(url, async (ch) => {
    ch.publish('', queue, body, { contentType: 'application/json', headers: { task: contract.TASK, id: 'deep' } });
    await ch.waitForConfirms();
  });
  const r = await h.run('producer.js', ['--id', '78', '--title', 'After', '--price', '1.00', '--url', url]);
  assert.equal(r.code, 0, r.stderr);
  await h.waitUntil(() => consumer.lines().some((l) => l.msg === 'applied' && l.id === 78),
    { message: () => `the event after the deep one:\n${consumer.output()}` });
  assert.ok(consumer.lines().some((l) => l.msg === 'rejected'), consumer.output());
  const parked = await h.withChannel(url, (ch) => ch.get(`${queue}.dlq`, { noAck: true }));
  assert.ok(parked, 'the deep message is in the DLQ');
});

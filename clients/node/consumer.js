#!/usr/bin/env node
'use strict';
// Subscribe to the product events with a durable queue of your own, bound to exchange `products`
// with a pattern (docs/events.md "Rules for consumers"):
//
//   node clients/node/consumer.js                       # queue node.products, pattern product.#
//   node clients/node/consumer.js --pattern product.deleted --queue node.deletes --state deletes.json
//
// * acknowledges a message only after its events are applied (and the state file, if any, is
//   written);
// * applies by version: keeps the newest version of each product, ignores older versions and
//   duplicates; deletes are tombstones, so a late older update cannot bring a product back;
// * a message that is not a valid task message of the contract, or carries an invalid event, is
//   rejected (not requeued): the broker dead-letters it to `<queue>.dlq` (via exchange
//   `<queue>.dlx`) and the reason is logged; valid events of the same message are applied first
//   (a replay from the DLQ is then harmless: versions make it idempotent);
// * survives broker restarts and dropped connections: it reconnects with backoff and consumes on.
//
// One line per event on stdout (`--json` for JSON lines). SIGINT/SIGTERM stop it cleanly.

const { parseArgs } = require('node:util');
const amqp = require('amqplib');
const contract = require('./lib/contract');
const { Store } = require('./lib/store');

const USAGE = 'usage: consumer.js [--pattern product.#] [--queue node.products] [--state FILE] [--prefetch 20] '
  + '[--url AMQP_URL] [--json]';

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

function options(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        pattern: { type: 'string', default: 'product.#' }, queue: { type: 'string', default: 'node.products' },
        state: { type: 'string' }, prefetch: { type: 'string', default: '20' }, url: { type: 'string' },
        json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    fail(`${err.message}\n${USAGE}`);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (!/^[A-Za-z0-9_.#*-]{1,255}$/.test(values.pattern)) fail(`--pattern: not a topic pattern: ${values.pattern}`);
  if (!/^[A-Za-z0-9_.:-]{1,200}$/.test(values.queue) || values.queue.startsWith('amq.')) {
    fail(`--queue: not a queue name of your own: ${values.queue}`);
  }
  const prefetch = Number(values.prefetch);
  if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 1000) fail('--prefetch must be 1-1000');
  const url = values.url || process.env.AMQP_URL || process.env.CELERY_BROKER_URL
    || 'amqp://guest:guest@127.0.0.1:5672/';
  return { ...values, prefetch, url };
}

function makeLogger(json) {
  return (fields) => {
    if (json) {
      process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...fields })}\n`);
      return;
    }
    const { msg, ...rest } = fields;
    const tail = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : v}`);
    process.stdout.write(`${[msg, ...tail].join(' ')}\n`);
  };
}

function redact(url) {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');
}

async function declare(ch, { queue, pattern }) {
  const dlx = `${queue}.dlx`;
  const dlq = `${queue}.dlq`;
  // the shared exchange belongs to the system's topology owner: check it, never declare it
  await ch.checkExchange(contract.EXCHANGE);
  await ch.assertExchange(dlx, 'fanout', { durable: true });
  await ch.assertQueue(dlq, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await ch.bindQueue(dlq, dlx, '');
  await ch.assertQueue(queue, {
    durable: true,
    arguments: { 'x-queue-type': 'quorum', 'x-dead-letter-exchange': dlx, 'x-delivery-limit': 20 },
  });
  await ch.bindQueue(queue, contract.EXCHANGE, pattern);
}

function handler(ch, store, log, opts) {
  const handle = handleOne(ch, store, log, opts);
  // whatever a message makes go wrong (a state too deep to write, a bug), it is rejected into
  // the DLQ with the reason and the consumer goes on: an exception here would close the channel
  return (msg) => {
    try {
      handle(msg);
    } catch (err) {
      log({ msg: 'rejected', reason: `cannot handle it: ${err && err.message ? err.message : err}`,
        to: `${opts.queue}.dlq` });
      try {
        ch.nack(msg, false, false);
      } catch (_) { /* the channel is gone: the broker redelivers it */ }
    }
  };
}

function handleOne(ch, store, log, { queue }) {
  return (msg) => {
    if (msg === null) {
      log({ msg: 'consumer cancelled by the broker (queue deleted?); reconnecting' });
      ch.close().catch(() => {});
      return;
    }
    let read;
    try {
      read = contract.readTaskMessage(msg);
    } catch (err) {
      if (!(err instanceof contract.ContractError)) throw err;
      log({ msg: 'rejected', reason: err.message, to: `${queue}.dlq`, redelivered: msg.fields.redelivered });
      ch.nack(msg, false, false);
      return;
    }
    for (const event of read.events) {
      const outcome = store.apply(event);
      const fields = { msg: outcome === 'applied' ? 'applied' : 'ignored', type: event.type,
        id: event.product_id, version: event.version };
      if (outcome !== 'applied') fields.why = outcome === 'duplicate' ? 'duplicate' : `older than version ${store.version(event.product_id)}`;
      if (outcome === 'applied' && event.type !== 'product.deleted') fields.title = event.data.title;
      if (event.trace_id) fields.trace_id = event.trace_id;
      log(fields);
    }
    store.save();
    if (read.invalid.length) {
      const reason = read.invalid.map((i) => `event ${i.index}: ${i.reason}`).join('; ');
      log({ msg: 'rejected', reason, to: `${queue}.dlq`, applied: read.events.length });
      ch.nack(msg, false, false);
      return;
    }
    ch.ack(msg);
  };
}

async function main(argv) {
  const opts = options(argv);
  const log = makeLogger(opts.json);
  const store = new Store(opts.state || null);
  let stopping = false;
  let reported = false;
  const conn = await amqp.connect(opts.url, {
    timeout: 10000,
    clientProperties: { connection_name: `product-events node consumer ${opts.queue}` },
    recovery: {
      waitForConnect: false, initialDelay: 250, maxDelay: 10000, maxRetries: Infinity,
      async setup(model) {
        const ch = await model.createChannel();
        ch.on('error', (err) => log({ msg: 'channel error', error: err.message }));
        await declare(ch, opts);
        await ch.prefetch(opts.prefetch);
        await ch.consume(opts.queue, handler(ch, store, log, opts), { noAck: false });
        log({ msg: 'consuming', queue: opts.queue, exchange: contract.EXCHANGE, pattern: opts.pattern,
          broker: redact(opts.url) });
        reported = false;
      },
    },
  });
  conn.on('handler-error', (err, event) => log({ msg: 'handler error', event, error: err.message }));
  conn.on('disconnect', (err) => {
    if (!stopping) log({ msg: 'disconnected; reconnecting', error: err ? err.message : 'closed' });
  });
  conn.on('connect-failed', (err) => {
    if (!reported) log({ msg: 'cannot connect yet; retrying', error: err.message, broker: redact(opts.url) });
    reported = true;
  });
  conn.on('error', (err) => log({ msg: 'connection error', error: err.message }));
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    log({ msg: 'stopping' });
    const timer = setTimeout(() => process.exit(0), 5000);
    await conn.close().catch(() => {});
    clearTimeout(timer);
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`error: ${err && err.message ? err.message : err}\n`);
    process.exit(1);
  });
}

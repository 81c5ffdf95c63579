#!/usr/bin/env node
'use strict';
// Publish one product event as docs/events.md says: exchange `products`, routing key = event
// type, a Celery task message carrying the event, mandatory, persistent, publisher confirms.
//
//   node clients/node/producer.js --id 9001 --title "Lamp" --price 20.00
//   node clients/node/producer.js --type product.updated --id 9001 --version 2 --title "Lamp" --price 25.00
//
// Prints what the broker confirmed. Exit codes: 0 confirmed and routed; 1 broker unreachable or
// connection/channel error; 2 invalid input; 3 unroutable (no queue is bound for the routing key,
// or the exchange does not exist); 4 not confirmed (nacked, or no confirm within --timeout).

const { parseArgs } = require('node:util');
const amqp = require('amqplib');
const contract = require('./lib/contract');

const USAGE = 'usage: producer.js --id N --title T --price 0.00 [--type product.created|product.updated|product.deleted] '
  + '[--version N] [--description D] [--image URL] [--trace-id ID] [--url AMQP_URL] [--timeout SECONDS]';

class Exit extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function options(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        id: { type: 'string' }, title: { type: 'string' }, price: { type: 'string' },
        type: { type: 'string', default: 'product.created' }, version: { type: 'string', default: '1' },
        description: { type: 'string', default: '' }, image: { type: 'string', default: '' },
        'trace-id': { type: 'string' }, url: { type: 'string' }, timeout: { type: 'string', default: '10' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new Exit(2, `${err.message}\n${USAGE}`);
  }
  if (values.help) throw new Exit(0, USAGE);
  for (const name of ['id', 'title', 'price']) {
    if (values[name] === undefined) throw new Exit(2, `--${name} is required\n${USAGE}`);
  }
  const type = values.type.startsWith('product.') ? values.type : `product.${values.type}`;
  if (!/^\d+$/.test(values.id) || !/^\d+$/.test(values.version)) {
    throw new Exit(2, 'invalid event: --id and --version must be positive integers');
  }
  const timeout = Number(values.timeout);
  if (!(timeout > 0 && timeout <= 600)) throw new Exit(2, '--timeout must be 1-600 seconds');
  let event;
  try {
    event = contract.buildEvent({
      type, id: values.id, version: values.version, title: values.title, price: values.price,
      image: values.image, description: values.description, traceId: values['trace-id'],
    });
  } catch (err) {
    if (err instanceof contract.ContractError) throw new Exit(2, `invalid event: ${err.message}`);
    throw err;
  }
  const url = values.url || process.env.AMQP_URL || process.env.CELERY_BROKER_URL
    || 'amqp://guest:guest@127.0.0.1:5672/';
  return { event, url, timeoutMs: timeout * 1000 };
}

function withDeadline(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Exit(4, `not confirmed: no ${what} within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

function redact(url) {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');
}

async function publish({ event, url, timeoutMs }) {
  let conn;
  try {
    conn = await withDeadline(amqp.connect(url, { timeout: timeoutMs, clientProperties: {
      connection_name: 'product-events node producer' } }), timeoutMs, 'connection');
  } catch (err) {
    if (err instanceof Exit) throw new Exit(1, `broker unreachable at ${redact(url)}: no connection within ${timeoutMs / 1000} s`);
    throw new Exit(1, `broker unreachable at ${redact(url)}: ${err.message}`);
  }
  // a connection- or channel-level failure rejects whatever is waiting
  let failed;
  const failure = new Promise((_, reject) => { failed = reject; });
  failure.catch(() => {});
  conn.on('error', (err) => failed(new Exit(1, `connection error: ${err.message}`)));
  conn.on('close', () => failed(new Exit(1, 'connection closed by the broker')));
  conn.on('blocked', (reason) => process.stderr.write(`broker blocked publishing: ${reason}\n`));
  try {
    const ch = await conn.createConfirmChannel();
    ch.on('error', (err) => {
      const notFound = /NOT_FOUND/.test(err.message);
      failed(new Exit(notFound ? 3 : 1, notFound
        ? `unroutable: exchange '${contract.EXCHANGE}' does not exist (${err.message})`
        : `channel error: ${err.message}`));
    });
    let returned = null;
    ch.on('return', (msg) => { returned = msg.fields; });
    const message = contract.taskMessage([event]);
    const confirmed = new Promise((resolve, reject) => {
      ch.publish(contract.EXCHANGE, message.routingKey, message.content, message.options, (err) => {
        if (err) reject(new Exit(4, 'not confirmed: the broker nacked the message'));
        else resolve();
      });
    });
    await withDeadline(Promise.race([confirmed, failure]), timeoutMs, 'publisher confirm');
    // the broker sends basic.return before the confirm of an unroutable mandatory message
    if (returned) {
      throw new Exit(3, `unroutable: no queue is bound to exchange '${contract.EXCHANGE}' for routing key `
        + `'${message.routingKey}' (${returned.replyCode} ${returned.replyText})`);
    }
    return message;
  } finally {
    conn.removeAllListeners('close');
    conn.on('error', () => {});
    await Promise.race([conn.close().catch(() => {}), new Promise((r) => setTimeout(r, 2000).unref())]);
  }
}

async function main(argv) {
  const opts = options(argv);
  const message = await publish(opts);
  const e = opts.event;
  process.stdout.write(`confirmed ${e.type} id=${e.product_id} version=${e.version} event_id=${e.event_id} `
    + `task_id=${message.taskId} (exchange ${contract.EXCHANGE}, routing key ${message.routingKey})\n`);
}

if (require.main === module) {
  main(process.argv.slice(2)).then(() => process.exit(0), (err) => {
    if (err instanceof Exit) {
      (err.code === 0 ? process.stdout : process.stderr).write(`${err.message}\n`);
      process.exit(err.code);
    }
    process.stderr.write(`error: ${err && err.message ? err.message : err}\n`);
    process.exit(1);
  });
}

module.exports = { publish, options, Exit };

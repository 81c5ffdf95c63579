'use strict';
// The wire contract of docs/events.md, for Node.js: names, the event envelope, and the Celery
// task message (protocol 2) that carries a batch of events. The JSON Schema is the Python side's
// own file (product_events/event.schema.json): one definition for every language.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const Ajv2020 = require('ajv/dist/2020');
const addFormats = require('ajv-formats');

const EXCHANGE = 'products';
const TASK = 'catalog.apply_product_events';
const EVENT_TYPES = ['product.created', 'product.updated', 'product.deleted'];
const SCHEMA_PATH = path.join(__dirname, '..', '..', '..', 'product_events', 'event.schema.json');

const ajv = new Ajv2020({ allErrors: false, strict: false });
addFormats(ajv);
const validateEnvelope = ajv.compile(JSON.parse(fs.readFileSync(SCHEMA_PATH, 'utf8')));

class ContractError extends Error {}

// The same namespace as product_events/contract.py: an event id names one change (type,
// product id, version), so re-emitting a change (resync, repair, a retried CLI call) carries the
// same id and an audit log records it once.
const EVENT_ID_NAMESPACE = 'a3b9f0d2-6a55-5d4c-9f1e-2f6c1b7e8d40';

function uuid5(namespace, name) {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const hash = crypto.createHash('sha1').update(ns).update(Buffer.from(name, 'utf8')).digest();
  const b = Buffer.from(hash.subarray(0, 16));
  b[6] = (b[6] & 0x0f) | 0x50;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function eventIdFor(type, productId, version) {
  return uuid5(EVENT_ID_NAMESPACE, `${type}:${productId}:${version}`);
}

function describeErrors(errors) {
  const e = (errors || [])[0];
  if (!e) return 'invalid';
  const where = e.instancePath || '(the event)';
  return `${where} ${e.message}`;
}

// Throws ContractError with a one-line reason unless `event` is a valid envelope.
function checkEvent(event) {
  if (!validateEnvelope(event)) throw new ContractError(describeErrors(validateEnvelope.errors));
  if (event.product_id !== event.data.id) throw new ContractError('product_id differs from data.id');
  if (event.version !== event.data.version) throw new ContractError('version differs from data.version');
  if (!Number.isSafeInteger(event.product_id)) {
    // JSON numbers above 2^53 lose digits in JavaScript: refuse them rather than apply to the
    // wrong product
    throw new ContractError(`product_id ${event.product_id} is beyond what this client represents exactly (2^53)`);
  }
  for (const field of ['occurred_at']) {
    if (Number.isNaN(Date.parse(event[field]))) throw new ContractError(`${field} is not a time`);
  }
  return event;
}

// One event envelope from what a person typed (strings) plus defaults.
function buildEvent({ type = 'product.created', id, version = 1, title, price, image = '',
                      description = '', createdAt, occurredAt, traceId }) {
  const now = new Date().toISOString();
  const productId = Number(id);
  const v = Number(version);
  const data = {
    id: productId, title, image, price, description, version: v,
    created_at: createdAt || now, updated_at: occurredAt || now,
  };
  const event = {
    event_id: eventIdFor(type, productId, v), type, product_id: productId, version: v,
    occurred_at: occurredAt || now, data,
  };
  if (traceId) event.trace_id = traceId;
  return checkEvent(event);
}

// The Celery task message for a batch of events of one type: { routingKey, content, options }
// for amqplib's publish (exchange `products`, mandatory, persistent).
function taskMessage(events) {
  if (!events.length) throw new ContractError('a message carries at least one event');
  const type = events[0].type;
  if (events.some((e) => e.type !== type)) throw new ContractError('one message carries events of one type');
  // a task id names one message (new every time); an event id names a change, sent maybe twice
  const taskId = crypto.randomUUID();
  const kwargs = { events };
  const body = [[], kwargs, { callbacks: null, errbacks: null, chain: null, chord: null }];
  return {
    routingKey: type,
    content: Buffer.from(JSON.stringify(body), 'utf8'),
    options: {
      contentType: 'application/json', contentEncoding: 'utf-8', persistent: true,
      mandatory: true, correlationId: taskId, messageId: taskId,
      headers: {
        lang: 'js', task: TASK, id: taskId, root_id: taskId, parent_id: null, group: null,
        retries: 0, eta: null, expires: null, argsrepr: '()',
        kwargsrepr: `{'events': <${events.length} ${type}>}`,
      },
    },
    taskId,
  };
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

// Reads a delivered message: { taskId, events: [valid...], invalid: [{index, reason}] }, or
// throws ContractError when the message as a whole is not a task message of this contract.
function readTaskMessage(msg) {
  const props = msg.properties || {};
  const headers = props.headers || {};
  if (props.contentType !== 'application/json') {
    throw new ContractError(`content type ${JSON.stringify(props.contentType ?? null)}, not application/json`);
  }
  if (props.contentEncoding && !/^utf-?8$/i.test(props.contentEncoding)) {
    throw new ContractError(`content encoding ${JSON.stringify(props.contentEncoding)}, not utf-8`);
  }
  if (headers.task !== TASK) throw new ContractError(`task ${JSON.stringify(headers.task ?? null)}, not ${TASK}`);
  let body;
  try {
    body = JSON.parse(UTF8.decode(msg.content));
  } catch (err) {
    throw new ContractError(`body is not UTF-8 JSON (${err.message})`);
  }
  if (!Array.isArray(body) || body.length !== 3 || !Array.isArray(body[0]) || body[0].length !== 0
      || body[1] === null || typeof body[1] !== 'object' || Array.isArray(body[1])) {
    throw new ContractError('body is not [[], {"events": [...]}, embed]');
  }
  const events = body[1].events;
  if (!Array.isArray(events) || events.length === 0) {
    throw new ContractError('kwargs "events" must be a non-empty list');
  }
  const valid = [];
  const invalid = [];
  events.forEach((event, index) => {
    try {
      valid.push(checkEvent(event));
    } catch (err) {
      if (!(err instanceof ContractError)) throw err;
      invalid.push({ index, reason: err.message });
    }
  });
  return { taskId: typeof headers.id === 'string' ? headers.id : null, events: valid, invalid };
}

module.exports = {
  EXCHANGE, TASK, EVENT_TYPES, ContractError, buildEvent, checkEvent, eventIdFor, taskMessage,
  readTaskMessage, uuid5,
};

'use strict';
// The contract module and the consumer's store, without a broker.

const test = require('node:test');
const assert = require('node:assert/strict');
const contract = require('../lib/contract');
const { Store } = require('../lib/store');

const base = { id: 7, title: 'Lamp', price: '20.00' };

test('uuid5 is RFC 4122 version 5 (a known vector)', () => {
  // uuid.uuid5(uuid.NAMESPACE_DNS, "python.org") in Python
  assert.equal(contract.uuid5('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'python.org'),
    '886313e1-3b8a-5372-9b90-0c9aee199e5d');
});

test('an event built from CLI values follows the schema and names its change', () => {
  const e = contract.buildEvent(base);
  assert.equal(e.type, 'product.created');
  assert.equal(e.product_id, 7);
  assert.equal(e.data.version, 1);
  assert.equal(e.event_id, contract.eventIdFor('product.created', 7, 1));
  assert.equal(contract.buildEvent(base).event_id, e.event_id, 'the same change, the same id');
  assert.notEqual(contract.buildEvent({ ...base, version: 2, type: 'product.updated' }).event_id, e.event_id);
  // the same vector as tests/e2e/test_contract.py: both producers name a change alike
  assert.equal(contract.eventIdFor('product.updated', 42, 3), '13476616-2fe5-58c9-9a48-eddbaa7a8140');
});

test('values the schema refuses are refused before anything is sent', () => {
  for (const bad of [{ price: '20' }, { price: '-1.00' }, { title: '' }, { title: 'x'.repeat(201) },
    { id: 0 }, { version: 0 }, { type: 'product.exploded' }, { description: 'x'.repeat(10001) },
    { title: 'nul\u0000' }]) {
    assert.throws(() => contract.buildEvent({ ...base, ...bad }), contract.ContractError, JSON.stringify(bad));
  }
});

test('the task message is the documented Celery protocol-2 message', () => {
  const e = contract.buildEvent(base);
  const m = contract.taskMessage([e]);
  assert.equal(m.routingKey, 'product.created');
  assert.equal(m.options.headers.task, 'catalog.apply_product_events');
  assert.notEqual(m.options.headers.id, e.event_id, 'a task id names the message, not the change');
  assert.notEqual(contract.taskMessage([e]).taskId, m.taskId);
  assert.equal(m.options.contentType, 'application/json');
  assert.equal(m.options.persistent, true);
  assert.equal(m.options.mandatory, true);
  const body = JSON.parse(m.content.toString('utf8'));
  assert.deepEqual(body[0], []);
  assert.deepEqual(body[1].events, [e]);
  const read = contract.readTaskMessage({ content: m.content, properties: m.options });
  assert.deepEqual(read.events, [e]);
  assert.deepEqual(read.invalid, []);
});

test('a message that is not a task message of the contract is refused with a reason', () => {
  const good = contract.taskMessage([contract.buildEvent(base)]);
  const props = good.options;
  const cases = [
    [{ content: Buffer.from('nope'), properties: props }, /not UTF-8 JSON/],
    [{ content: Buffer.from([0xff, 0xfe]), properties: props }, /not UTF-8 JSON/],
    [{ content: Buffer.from('{}'), properties: props }, /body is not/],
    [{ content: Buffer.from('[[],"x",{}]'), properties: props }, /body is not/],
    [{ content: Buffer.from('[[],{"events":[]},{}]'), properties: props }, /non-empty list/],
    [{ content: good.content, properties: { ...props, contentType: 'application/x-python-serialize' } }, /content type/],
    [{ content: good.content, properties: { ...props, headers: { ...props.headers, task: ['x'] } } }, /task/],
    [{ content: good.content, properties: {} }, /content type/],
  ];
  for (const [msg, reason] of cases) {
    assert.throws(() => contract.readTaskMessage(msg), reason);
  }
  const mixed = Buffer.from(JSON.stringify([[], { events: [contract.buildEvent(base), { bad: 1 }] }, {}]));
  const read = contract.readTaskMessage({ content: mixed, properties: props });
  assert.equal(read.events.length, 1);
  assert.equal(read.invalid.length, 1);
  const huge = Buffer.from(JSON.stringify([[], { events: [{ ...contract.buildEvent(base), product_id: 2 ** 60 }] }, {}]));
  assert.equal(contract.readTaskMessage({ content: huge, properties: props }).invalid.length, 1);
});

test('the store keeps the newest version, ignores duplicates and older ones, and keeps tombstones', () => {
  const s = new Store();
  const ev = (type, version, title = 'Lamp') => contract.buildEvent({ ...base, type, version, title });
  assert.equal(s.apply(ev('product.created', 1)), 'applied');
  assert.equal(s.apply(ev('product.created', 1)), 'duplicate');
  assert.equal(s.apply(ev('product.updated', 3, 'v3')), 'applied');
  assert.equal(s.apply(ev('product.updated', 2, 'v2')), 'stale');
  assert.equal(s.get(7).title, 'v3');
  assert.equal(s.apply(ev('product.deleted', 4, 'v3')), 'applied');
  assert.equal(s.get(7), null);
  assert.equal(s.apply(ev('product.updated', 3, 'late')), 'stale', 'a late update cannot bring it back');
  assert.equal(s.get(7), null);
  assert.equal(s.version(7), 4);
});

'use strict';
// Test plumbing: run the CLIs as a person would, the real broker's rabbitmqctl, a vhost of the
// test's own, and polling with a deadline (never a bare sleep).

const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const path = require('node:path');
const amqp = require('amqplib');

const DIR = path.join(__dirname, '..');
const BROKER = process.env.NODE_TEST_BROKER || 'amqp://guest:guest@127.0.0.1:5672';

function rabbitmqctl(...args) {
  return execFileSync('rabbitmqctl', ['-q', ...args], { encoding: 'utf8', timeout: 60000 });
}

async function ownVhost(t) {
  const vhost = `node-test-${crypto.randomBytes(4).toString('hex')}`;
  rabbitmqctl('add_vhost', vhost);
  rabbitmqctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*');
  t.after(() => rabbitmqctl('delete_vhost', vhost));
  return { vhost, url: `${BROKER}/${encodeURIComponent(vhost)}` };
}

// Close the broker connections whose client name contains `name` (a dropped connection, as a
// broker restart or a network cut does to a client).
function closeConnections(vhost, name) {
  const lines = rabbitmqctl('list_connections', 'pid', 'vhost', 'client_properties').split('\n');
  let closed = 0;
  for (const line of lines) {
    const [pid, v] = line.split('\t');
    if (v === vhost && line.includes(name)) {
      rabbitmqctl('close_connection', pid, 'test: dropped connection');
      closed += 1;
    }
  }
  return closed;
}

function run(script, args, { env = {}, timeoutMs = 30000 } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(DIR, script), ...args],
      { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const started = Date.now();
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, seconds: (Date.now() - started) / 1000 });
    });
  });
}

// A long-running consumer.js; `.lines()` are its JSON log lines so far.
function startConsumer(t, args, env = {}) {
  const child = spawn(process.execPath, [path.join(DIR, 'consumer.js'), '--json', ...args],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  const consumer = {
    child,
    exited,
    lines: () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l)),
    output: () => `${out}${err}`,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  t.after(() => consumer.stop());
  return consumer;
}

async function waitUntil(predicate, { timeoutMs = 20000, message = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await predicate();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${typeof message === 'function' ? message() : message}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function withChannel(url, fn) {
  const conn = await amqp.connect(url, { timeout: 10000 });
  try {
    const ch = await conn.createConfirmChannel();
    return await fn(ch);
  } finally {
    await conn.close().catch(() => {});
  }
}

module.exports = { DIR, rabbitmqctl, ownVhost, closeConnections, run, startConsumer, waitUntil, withChannel };

'use strict';
// The consumer's copy of the products: the newest version of each product, deletes kept as
// tombstones (id and version, hidden from readers) so that an older update arriving late cannot
// bring a deleted product back. Applying is idempotent: a duplicate or an older version is ignored.
//
// With a file, the state is written atomically (temporary file + rename) before the consumer
// acknowledges the message, so a crash never loses an acknowledged event.

const fs = require('node:fs');
const path = require('node:path');

class Store {
  constructor(file = null) {
    this.file = file;
    this.products = new Map();
    if (file && fs.existsSync(file)) {
      const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
      for (const [id, entry] of Object.entries(saved.products || {})) this.products.set(Number(id), entry);
    }
  }

  // -> 'applied' | 'duplicate' | 'stale'
  apply(event) {
    const have = this.products.get(event.product_id);
    if (have && have.version === event.version) return 'duplicate';
    if (have && have.version > event.version) return 'stale';
    const deleted = event.type === 'product.deleted';
    this.products.set(event.product_id, { version: event.version, deleted, data: event.data });
    return 'applied';
  }

  get(id) {
    const entry = this.products.get(Number(id));
    return entry && !entry.deleted ? entry.data : null;
  }

  version(id) {
    const entry = this.products.get(Number(id));
    return entry ? entry.version : 0;
  }

  save() {
    if (!this.file) return;
    const tmp = path.join(path.dirname(this.file), `.${path.basename(this.file)}.${process.pid}.tmp`);
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeSync(fd, JSON.stringify({ products: Object.fromEntries(this.products) }));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.file);
  }
}

module.exports = { Store };

// meshlite dashboard: the WebSocket feed's frames applied to a model of the mesh
// (docs/dashboard.md, "WebSocket /ws"). No DOM and no dependency, so a viewer of
// your own can take it as it is. The "hello", the first frame on each connection,
// holds the whole mesh in a tick's shape (or nothing, when it comes before the
// first second was measured: a whole "tick" follows then); each "delta" after it
// holds only what changed since the frame before it on that connection.
"use strict";

// eslint-disable-next-line no-unused-vars
const meshliteFeed = (() => {
  const VERSION = 3;  // the feed's format this file reads: the hello's "version"
  const ROWS = Symbol("rows");  // a service's backend rows by address, in order

  function place(model, name, entry) {
    // a whole service: from a hello or a tick, or one new in a delta
    const svc = { ...entry };
    svc[ROWS] = new Map(entry.backends.map((row) => [row[0], row]));
    model.set(name, svc);
  }

  function merge(svc, entry) {
    // the fields that changed, the backend rows changed or added, the rows gone
    const { backends, removed, ...fields } = entry;
    Object.assign(svc, fields);
    if (backends || removed) {
      for (const row of backends || []) svc[ROWS].set(row[0], row);
      for (const address of removed || []) svc[ROWS].delete(address);
      svc.backends = [...svc[ROWS].values()];
    }
  }

  // Whether `frame` holds the whole mesh: a tick, or a hello that carries it. The
  // deltas of a connection apply to the last whole frame, never before one.
  function isWhole(frame) {
    return frame.type === "tick" || (frame.type === "hello" && frame.services !== undefined);
  }

  // Applies one frame to `model`, a Map of service name -> its latest figures (the
  // shape of a tick's service). Returns the names of the services that changed
  // and of those removed. A hello without the mesh changes nothing.
  function apply(model, frame) {
    const changed = [], removed = [];
    if (isWhole(frame)) {
      for (const name of model.keys()) if (!Object.hasOwn(frame.services, name)) removed.push(name);
      model.clear();
    } else if (frame.type === "delta") {
      for (const name of frame.removed || []) if (model.delete(name)) removed.push(name);
    } else {
      return { changed, removed };
    }
    for (const [name, entry] of Object.entries(frame.services)) {
      const svc = model.get(name);
      if (svc) merge(svc, entry); else place(model, name, entry);
      changed.push(name);
    }
    return { changed, removed };
  }

  return { VERSION, apply, isWhole };
})();

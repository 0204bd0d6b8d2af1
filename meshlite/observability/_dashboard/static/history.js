// meshlite dashboard: each service's per-second history, as the charts read it.
// No DOM. A history is four columns (requests, errors, p50, p99) from the second
// `start`; the page fills it from /api/services/{name}/history (only for the cards
// it draws, as far back as the range shown) and from the feed's frames.
"use strict";

// eslint-disable-next-line no-unused-vars
const meshliteHistory = (() => {
  const KEYS = ["requests", "errors", "p50", "p99"];

  function empty() {
    return { start: null, requests: [], errors: [], p50: [], p99: [] };
  }

  // Puts one second's figures in `h` (a second already there is replaced), keeping
  // at most `limit` seconds.
  function append(h, second, point, limit) {
    if (h.start === null) h.start = second;
    const end = h.start + h.requests.length - 1;
    if (second <= end) {
      const i = second - h.start;
      if (i >= 0) for (const key of KEYS) h[key][i] = point[key];
    } else {
      for (let s = end + 1; s < second; s++) for (const key of KEYS) h[key].push(null);
      for (const key of KEYS) h[key].push(point[key]);
    }
    const extra = h.requests.length - limit;
    if (extra > 0) {
      for (const key of KEYS) h[key].splice(0, extra);
      h.start += extra;
    }
  }

  // The history of an answer of /api/services/{name}/history, with the seconds
  // `live` holds (from the feed, while the answer was on its way) put over it.
  function merged(data, live, limit) {
    const h = empty();
    if (data.start !== null) {
      h.start = data.start;
      for (const key of KEYS) h[key] = data[key];
    }
    if (live.start !== null) {
      for (let i = 0; i < live.requests.length; i++) {
        if (live.requests[i] === null) continue;
        append(h, live.start + i, { requests: live.requests[i], errors: live.errors[i],
                                    p50: live.p50[i], p99: live.p99[i] }, limit);
      }
    }
    return h;
  }

  // The values of column `key` from second `start` to `end`, null where unknown.
  function slice(h, key, start, end) {
    const out = new Array(end - start + 1).fill(null);
    if (h.start === null) return out;
    for (let s = Math.max(start, h.start); s <= end; s++) {
      const v = h[key][s - h.start];
      out[s - start] = v === undefined ? null : v;
    }
    return out;
  }

  return { append, empty, merged, slice };
})();

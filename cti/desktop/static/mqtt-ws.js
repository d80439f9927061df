// MQTT 3.1.1 over WebSockets, the little the agent desktop needs: connect with a
// login, subscribe (and learn which subscriptions the broker refused), receive
// QoS 0/1 messages, keep alive, reconnect.  No publishing: the desktop changes
// nothing through the broker (its rights are read-only, enforced by the broker);
// state changes go through the server's HTTP API.
//
// The keep-alive runs on a dedicated worker (ticker.js): browsers throttle a
// background tab's timers to once a minute, which would let the broker drop a
// 30 s keep-alive; a worker's timer is not throttled that way.

const CONNECT = 1, CONNACK = 2, PUBLISH = 3, PUBACK = 4, SUBSCRIBE = 8, SUBACK = 9;
const PINGREQ = 12, PINGRESP = 13, DISCONNECT = 14;
const REFUSED = {
  1: "unacceptable protocol version", 2: "client id rejected", 3: "server unavailable",
  4: "bad user name or password", 5: "not authorised",
};

const utf8 = new TextEncoder();
const text = new TextDecoder();

function str(s) {
  const b = utf8.encode(s);
  return [b.length >> 8, b.length & 0xff, ...b];
}

function packet(type, flags, body) {
  const head = [(type << 4) | flags];
  let n = body.length;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    head.push(byte);
  } while (n > 0);
  return new Uint8Array([...head, ...body]);
}

// Splits the byte stream into packets (a WebSocket message may hold several or part of one).
class Framer {
  constructor() { this.buf = new Uint8Array(0); }
  push(chunk) {
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf); joined.set(chunk, this.buf.length);
    this.buf = joined;
    const out = [];
    for (;;) {
      if (this.buf.length < 2) break;
      let len = 0, mul = 1, i = 1, byte;
      do {
        if (i >= this.buf.length) return out;
        byte = this.buf[i++];
        len += (byte & 0x7f) * mul;
        mul *= 128;
        if (i > 5) throw new Error("malformed remaining length");
      } while (byte & 0x80);
      if (this.buf.length < i + len) break;
      out.push({ type: this.buf[0] >> 4, flags: this.buf[0] & 0x0f, body: this.buf.slice(i, i + len) });
      this.buf = this.buf.slice(i + len);
    }
    return out;
  }
}

export class MqttClient extends EventTarget {
  // options: { url, clientId, username, password, keepalive (s), credentials: async () => {...} }
  constructor(options) {
    super();
    this.options = options;
    this.nextId = 1;
    this.pendingSubs = new Map();
    this.filters = [];
    this.state = "idle";
    this.backoff = 1;
    this.ticker = new Worker("/static/agent/ticker.js");
    this.ticker.onmessage = () => this.tick();
  }

  setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  // Subscriptions are (re)made on every connect; resolves with the broker's answer.
  subscribe(filters) {
    this.filters = filters;
    if (this.state === "live") return this.sendSubscribe(filters);
    return Promise.resolve(null);
  }

  async connect() {
    // Fresh credentials on every (re)connect; after a refusal the server is asked
    // for a new login (the broker may have lost the old one).
    if (this.options.credentials) {
      Object.assign(this.options, await this.options.credentials(this.refused === true));
    }
    this.refused = false;
    const o = this.options;
    this.setState("connecting");
    const ws = new WebSocket(o.url, ["mqtt"]);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.framer = new Framer();
    ws.onopen = () => {
      const flags = 0x02 | 0x80 | 0x40; // clean session, user name, password
      const body = [...str("MQTT"), 4, flags, o.keepalive >> 8, o.keepalive & 0xff,
        ...str(o.clientId), ...str(o.username), ...str(o.password)];
      ws.send(packet(CONNECT, 0, body));
    };
    ws.onmessage = (ev) => {
      let packets;
      try {
        packets = this.framer.push(new Uint8Array(ev.data));
      } catch (e) {
        ws.close();
        return;
      }
      for (const p of packets) this.handle(p);
    };
    ws.onclose = () => this.lost();
    ws.onerror = () => {};
  }

  lost() {
    this.ticker.postMessage({ stop: true });
    for (const [, sub] of this.pendingSubs) sub.resolve(null);
    this.pendingSubs.clear();
    if (this.state === "closed" || this.state === "refused") return;
    this.setState("reconnecting", { in: this.backoff });
    const wait = this.backoff * 1000;
    this.backoff = Math.min(this.backoff * 2, 15);
    setTimeout(() => this.connect().catch(() => this.lost()), wait);
  }

  handle(p) {
    this.lastHeard = Date.now();
    if (p.type === CONNACK) {
      const code = p.body[1];
      if (code !== 0) {
        // A refused login will not get better by retrying with the same one: the
        // page fetches fresh credentials (its session may have ended) and tries again.
        this.refused = true;
        this.setState("reconnecting", { refused: REFUSED[code] || `code ${code}` });
        this.ws.close();
        return;
      }
      this.backoff = 1;
      this.lastHeard = Date.now();
      this.ticker.postMessage({ every: Math.max(1, this.options.keepalive / 3) * 1000 });
      this.setState("live");
      if (this.filters.length) this.sendSubscribe(this.filters);
    } else if (p.type === SUBACK) {
      const id = (p.body[0] << 8) | p.body[1];
      const sub = this.pendingSubs.get(id);
      this.pendingSubs.delete(id);
      if (sub) {
        const granted = Array.from(p.body.slice(2));
        const result = sub.filters.map((f, i) => ({ filter: f, granted: granted[i] !== 0x80 }));
        for (const r of result) if (!r.granted) {
          this.dispatchEvent(new CustomEvent("denied", { detail: r }));
        }
        sub.resolve(result);
      }
    } else if (p.type === PUBLISH) {
      const qos = (p.flags >> 1) & 3;
      const len = (p.body[0] << 8) | p.body[1];
      const topic = text.decode(p.body.slice(2, 2 + len));
      let at = 2 + len;
      if (qos > 0) {
        const id = [p.body[at], p.body[at + 1]];
        at += 2;
        this.ws.send(packet(PUBACK, 0, id));
      }
      const payload = text.decode(p.body.slice(at));
      this.dispatchEvent(new CustomEvent("message", {
        detail: { topic, payload, retained: (p.flags & 1) === 1 },
      }));
    } else if (p.type === PINGRESP) {
      this.lastHeard = Date.now();
    }
  }

  sendSubscribe(filters) {
    const id = this.nextId;
    this.nextId = (this.nextId % 65535) + 1;
    const body = [id >> 8, id & 0xff];
    for (const f of filters) body.push(...str(f), 1);
    return new Promise((resolve) => {
      this.pendingSubs.set(id, { filters, resolve });
      this.ws.send(packet(SUBSCRIBE, 2, body));
    });
  }

  tick() {
    if (this.state !== "live") return;
    // No answer for 1.5 keep-alives: the connection is gone even if the socket says not.
    if (Date.now() - this.lastHeard > this.options.keepalive * 1500) {
      this.ws.close();
      return;
    }
    this.ws.send(packet(PINGREQ, 0, []));
  }

  close() {
    this.setState("closed");
    this.ticker.postMessage({ stop: true });
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(packet(DISCONNECT, 0, []));
    if (this.ws) this.ws.close();
  }
}

// Scene stream client: JSON over WebSocket (protocol in studio/scene_stream.py), reconnects with
// exponential back-off (0.25 s doubling to 8 s, reset after a snapshot arrives).

export class SceneStream {
  /**
   * @param {string} url ws(s)://host/v1/scene/ws[?token=…]
   * @param {(msg: object) => void} onMessage called for every snapshot / delta / error
   * @param {(state: string) => void} onState 'connecting' | 'open' | 'closed'
   */
  constructor(url, onMessage, onState = () => {}) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.delay = 250;
    this.ws = null;
    this.clientId = null;
    this.seq = -1;
    this.reconnects = 0;
    this.closed = false;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    this.onState('connecting');
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => this.onState('open');
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg.type === 'snapshot') {
        this.clientId = msg.client ?? this.clientId;
        this.seq = msg.seq;
        this.delay = 250;
      } else if (typeof msg.seq === 'number') {
        if (msg.seq <= this.seq) return; // stale duplicate
        this.seq = msg.seq;
      }
      this.onMessage(msg);
    };
    ws.onclose = () => {
      this.onState('closed');
      if (this.closed) return;
      this.reconnects += 1;
      const wait = this.delay;
      this.delay = Math.min(this.delay * 2, 8000);
      setTimeout(() => this.connect(), wait);
    };
    ws.onerror = () => ws.close();
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  close() {
    this.closed = true;
    this.ws?.close();
  }
}

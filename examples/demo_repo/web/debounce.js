export function debounce(fn, waitMs, { leading = false } = {}) {
  let timer = null;
  let pendingArgs = null;
  return function debounced(...args) {
    const callNow = leading && timer === null;
    pendingArgs = args;
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      if (!leading) fn.apply(this, pendingArgs);
    }, waitMs);
    if (callNow) fn.apply(this, args);
  };
}

export const escapeHtml = (text) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

export class EventBus {
  constructor() {
    this.handlers = new Map();
  }
  on(event, handler) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(handler);
    return () => this.handlers.get(event).delete(handler);
  }
  emit(event, payload) {
    for (const handler of this.handlers.get(event) ?? []) handler(payload);
  }
}

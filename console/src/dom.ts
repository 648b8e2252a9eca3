/** Small DOM helpers: elements are found by their `data-testid` and built without innerHTML. */

export function byTestId<T extends HTMLElement = HTMLElement>(testId: string, root: ParentNode = document): T {
  const found = root.querySelector<T>(`[data-testid="${testId}"]`);
  if (!found) throw new Error(`console: no element with data-testid="${testId}"`);
  return found;
}

type Child = Node | string | null | undefined | false;

interface Props {
  className?: string;
  text?: string;
  attrs?: Record<string, string>;
}

/** `h('li', {className: 'x', attrs: {'data-testid': 'y'}}, child, 'text')`; text is never parsed as HTML. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props.className) element.className = props.className;
  if (props.text !== undefined) element.textContent = props.text;
  for (const [name, value] of Object.entries(props.attrs ?? {})) element.setAttribute(name, value);
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

/** Local clock time of a unix timestamp (seconds), e.g. `14:03:27`. */
export function clock(timestamp: number | undefined): HTMLTimeElement {
  const date = typeof timestamp === 'number' ? new Date(timestamp * 1000) : new Date();
  const text = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  return h('time', { text, attrs: { datetime: date.toISOString() } });
}

/** An http(s) URL (absolute or relative to the page), or null: never `javascript:` and the like. */
export function safeUrl(value: unknown): string | null {
  if (typeof value !== 'string' || value === '') return null;
  try {
    const url = new URL(value, location.href);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A one-line preview of any JSON value, cut to `max` characters: `title: "Hi", body: "..."`. */
export function preview(value: unknown, max = 160): string {
  const json = (v: unknown): string => {
    try {
      return JSON.stringify(v) ?? String(v);
    } catch {
      return String(v);
    }
  };
  const text =
    typeof value === 'string'
      ? value
      : isRecord(value)
        ? Object.entries(value)
            .map(([key, v]) => `${key}: ${json(v)}`)
            .join(', ')
        : json(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function text(value: unknown): string {
  if (value === null || value === undefined) return '';
  return typeof value === 'string' ? value : preview(value, 500);
}

/** The message of the gateway's HTTP error body `{"error": {"code", "message", "field"?}}`. */
export function errorMessage(body: unknown): string | undefined {
  const error = isRecord(body) ? body['error'] : undefined;
  return isRecord(error) && typeof error['message'] === 'string' ? error['message'] : undefined;
}

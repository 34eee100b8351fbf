// A few lines of DOM building instead of a framework: the page renders small tables from
// JSON, and text always goes in through textContent, never as HTML.

export type Child = Node | string | number | null | undefined | false | readonly Child[];

export type Props = Record<string, string | number | boolean | undefined>;

function append(parent: Node, child: Child): void {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child as readonly Child[]) append(parent, c);
  } else if (child instanceof Node) {
    parent.appendChild(child);
  } else {
    parent.appendChild(document.createTextNode(String(child as string | number)));
  }
}

/** An element with attributes (`class`, `aria-*`, `data-*`, ...) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props | null = null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === false) continue;
    el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';

export function svg(tag: string, attrs: Record<string, string | number>): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

/**
 * Replaces a container's content, keeping what a person was doing in it: which <details>
 * were open and which element (by data-key) had the keyboard focus.
 */
export function replace(container: HTMLElement, ...children: Child[]): void {
  const open = new Set<string>();
  for (const d of container.querySelectorAll<HTMLDetailsElement>('details[data-key]')) {
    if (d.open) open.add(d.dataset.key ?? '');
  }
  const active = document.activeElement;
  const focusKey =
    active instanceof HTMLElement && container.contains(active)
      ? active.closest<HTMLElement>('[data-key]')?.dataset.key
      : undefined;
  const fragment = document.createDocumentFragment();
  append(fragment, children);
  container.replaceChildren(fragment);
  for (const d of container.querySelectorAll<HTMLDetailsElement>('details[data-key]')) {
    if (open.has(d.dataset.key ?? '')) d.open = true;
  }
  if (focusKey !== undefined) {
    const again = container.querySelector<HTMLElement>(`[data-key="${CSS.escape(focusKey)}"]`);
    (again?.querySelector<HTMLElement>('summary') ?? again)?.focus();
  }
}

/** "3 s", "4 min", "2 h 5 min", "3 d". */
export function age(fromIso: string, now: number): string {
  const s = Math.max(0, Math.floor((now - Date.parse(fromIso)) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return m % 60 === 0 ? `${hours} h` : `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d`;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

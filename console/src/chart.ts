/**
 * A small live line chart in SVG: one line per series over the last `capacity` samples, newest
 * at the right (a series with fewer samples than the others starts later), the y axis from 0 to
 * a rounded maximum. Attributes only (no inline styles), so the
 * page's Content-Security-Policy (`style-src 'self'`) allows it.
 */

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 320;
const HEIGHT = 110;
const PAD = { left: 4, right: 4, top: 8, bottom: 6 };

export interface Series {
  id: string;
  color: string;
  /** oldest first; null where the value is not known (a node that did not answer) */
  values: ReadonlyArray<number | null>;
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string>): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, value);
  return element;
}

/** 1, 2, 5, 10, 20, 50... at or above `value`: axis maxima that read well. */
export function niceCeiling(value: number): number {
  if (value <= 1) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}

/** Replaces the chart in `figure` (its `svg` child) with the current series. */
export function renderChart(figure: HTMLElement, series: readonly Series[], capacity: number, unit = ''): void {
  const known = series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const top = niceCeiling(Math.max(0, ...known));
  // the x axis spans the samples so far (up to `capacity`): a young chart fills its width too
  const span = Math.max(2, Math.min(capacity, Math.max(...series.map((line) => line.values.length))));
  const x = (index: number, count: number): number =>
    PAD.left + ((span - count + index) / (span - 1)) * (WIDTH - PAD.left - PAD.right);
  const y = (value: number): number => HEIGHT - PAD.bottom - (value / top) * (HEIGHT - PAD.top - PAD.bottom);

  const chart = svg('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', preserveAspectRatio: 'none' });
  for (const level of [0, 0.5, 1]) {
    const at = y(top * level).toFixed(1);
    chart.append(svg('line', { x1: '0', x2: String(WIDTH), y1: at, y2: at, class: 'grid-line' }));
  }
  for (const line of series) {
    const points: string[] = [];
    line.values.forEach((value, index) => {
      if (value !== null) points.push(`${x(index, line.values.length).toFixed(1)},${y(value).toFixed(1)}`);
    });
    const last = line.values.at(-1);
    chart.append(
      svg('polyline', {
        points: points.join(' '),
        fill: 'none',
        stroke: line.color,
        'stroke-width': '2',
        'vector-effect': 'non-scaling-stroke',
        'data-node': line.id,
        'data-points': String(points.length),
        'data-last': last === null || last === undefined ? '' : String(last),
      }),
    );
  }
  figure.querySelector('svg')?.remove();
  figure.append(chart);
  const label = figure.querySelector('.chart-max');
  if (label) label.textContent = `max ${top}${unit}`;
  chart.setAttribute('aria-label', `${figure.querySelector('figcaption')?.firstChild?.textContent?.trim() ?? 'chart'}, up to ${top}`);
}

/**
 * A webhook receiver on loopback for the alert tests: records every POST (path, headers, JSON
 * body) and answers 204.
 */
import http from 'node:http';
import type net from 'node:net';

export interface Received {
  path: string;
  authorization?: string;
  body: Record<string, unknown>;
}

export interface WebhookSink {
  url(pathName: string): string;
  received: Received[];
  close(): Promise<void>;
}

export async function startWebhookSink(): Promise<WebhookSink> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (chunk) => (text += chunk));
    req.on('end', () => {
      received.push({ path: req.url ?? '', authorization: req.headers.authorization, body: JSON.parse(text || '{}') });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: (pathName) => `http://127.0.0.1:${port}${pathName}`,
    received,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The samples of one metric in Prometheus' text format, with their labels. */
export function metricSamples(text: string, name: string): { labels: Record<string, string>; value: number }[] {
  const samples: { labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value;
    samples.push({ labels, value: Number(m[3]) });
  }
  return samples;
}

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

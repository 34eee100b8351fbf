import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyPluginCallback, FastifyReply } from 'fastify';
import { ErrorCode } from '@spillway/common';

/**
 * The dashboard at /ui: a static page (HTML, CSS and ES modules compiled from
 * packages/broker/page by `tsc -b`) that reads the REST API with the viewer or admin token the
 * user types in. The page itself holds no data, so it is served without authentication; every
 * request it makes for data goes through the API's own authentication.
 */

/**
 * No inline script or style, no eval, nothing from another origin; forms never submit natively
 * (the login form would otherwise put the token in a URL) and the page cannot be framed.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

// Both src/ui/ and dist/ui/ sit two levels below packages/broker.
const PAGE_DIR = fileURLToPath(new URL('../../page/static/', import.meta.url));
const BUILT_DIR = fileURLToPath(new URL('../../dist/page/', import.meta.url));

/** The page's files by URL name, read once: index.html, style.css and the compiled modules. */
export function loadDashboardAssets(
  pageDir: string = PAGE_DIR,
  builtDir: string = BUILT_DIR,
): Map<string, Asset> | undefined {
  if (!existsSync(`${builtDir}app.js`) || !existsSync(`${pageDir}index.html`)) return undefined;
  const assets = new Map<string, Asset>();
  const add = (dir: string, name: string): void => {
    const ext = name.slice(name.lastIndexOf('.'));
    const type = TYPES[ext];
    if (type === undefined) return;
    const body = readFileSync(`${dir}${name}`);
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
    assets.set(name, { body, type, etag });
  };
  for (const name of readdirSync(pageDir)) add(pageDir, name);
  for (const name of readdirSync(builtDir)) if (name.endsWith('.js')) add(builtDir, name);
  return assets;
}

function send(reply: FastifyReply, asset: Asset, ifNoneMatch: string | undefined): FastifyReply {
  void reply
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY')
    .header('cross-origin-opener-policy', 'same-origin')
    .header('cross-origin-resource-policy', 'same-origin')
    // Revalidated on every load: a broker upgrade shows its new page at once.
    .header('cache-control', 'no-cache')
    .header('etag', asset.etag);
  if (ifNoneMatch === asset.etag) return reply.status(304).send();
  return reply.type(asset.type).send(asset.body);
}

export interface DashboardOptions {
  /** Defaults to the files next to this module; tests point elsewhere. */
  assets?: Map<string, Asset> | undefined;
}

/** Registers GET /ui, /ui/ and /ui/<file>. Read-only; no data of its own. */
export const dashboardRoutes: FastifyPluginCallback<DashboardOptions> = (
  app: FastifyInstance,
  opts,
  done,
) => {
  const assets = 'assets' in opts ? opts.assets : loadDashboardAssets();
  const config = { public: true };
  const schema = { hide: true };

  const missing = (reply: FastifyReply): FastifyReply =>
    reply.status(503).send({
      error: {
        code: ErrorCode.UNAVAILABLE,
        message:
          'the dashboard is not built into this broker: run `npm run build` (packages/broker/dist/page is missing)',
      },
    });

  // A trailing slash, so the page's relative URLs (./app.js, ../api/v1/...) also work behind
  // a proxy that mounts the broker under a path prefix.
  app.get('/ui', { config, schema }, (_req, reply) => reply.redirect('ui/', 302));

  const serve = (name: string, ifNoneMatch: string | undefined, reply: FastifyReply) => {
    if (!assets) return missing(reply);
    const asset = assets.get(name);
    if (!asset) {
      return reply.status(404).send({
        error: { code: ErrorCode.NOT_FOUND, message: `no dashboard file ${name}` },
      });
    }
    return send(reply, asset, ifNoneMatch);
  };
  app.get('/ui/', { config, schema }, (req, reply) =>
    serve('index.html', req.headers['if-none-match'], reply),
  );
  app.get<{ Params: { file: string } }>('/ui/:file', { config, schema }, (req, reply) =>
    serve(req.params.file, req.headers['if-none-match'], reply),
  );
  done();
};

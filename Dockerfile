# syntax=docker/dockerfile:1
# One image for every Spillway entry point: spillway-broker, spillway-agent,
# spillway-virtual-node and spillctl. Build from the repository root:
#   docker build -t <registry>/spillway:0.1.0 .
ARG NODE_IMAGE=node:24-slim

# --- build: compile the TypeScript packages ------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
# Manifests first: the dependency layer is reused until a package.json or the lockfile changes.
COPY package.json package-lock.json ./
COPY packages/common/package.json packages/common/
COPY packages/api/package.json packages/api/
COPY packages/broker/package.json packages/broker/
COPY packages/agent/package.json packages/agent/
COPY packages/virtual-node/package.json packages/virtual-node/
COPY packages/cli/package.json packages/cli/
# The lockfile lists the e2e workspace too; npm ci wants its manifest present.
COPY e2e/package.json e2e/
# The base image is Node 24 already: skip install scripts (the `node` devDependency's
# download of a second Node 24 among them).
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.base.json tsconfig.json ./
COPY proto proto
COPY packages packages
RUN npx tsc -b packages/common packages/api packages/broker packages/agent packages/virtual-node packages/cli \
 && find packages -path '*/dist/*' \( -name '*.test.js' -o -name '*.test.js.map' -o -name '*.test.d.ts' -o -name '*.test.d.ts.map' -o -name '*.tsbuildinfo' \) -delete

# --- deps: production dependencies of the shipped workspaces only ---------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /src
COPY --from=build /src/package.json /src/package-lock.json ./
COPY --from=build /src/packages/common/package.json packages/common/
COPY --from=build /src/packages/api/package.json packages/api/
COPY --from=build /src/packages/broker/package.json packages/broker/
COPY --from=build /src/packages/agent/package.json packages/agent/
COPY --from=build /src/packages/virtual-node/package.json packages/virtual-node/
COPY --from=build /src/packages/cli/package.json packages/cli/
COPY --from=build /src/e2e/package.json e2e/
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts \
      --workspace packages/common --workspace packages/api --workspace packages/broker \
      --workspace packages/agent --workspace packages/virtual-node --workspace packages/cli \
 && rm -rf node_modules/@spillway/e2e /root/.npm

# --- runtime --------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
LABEL org.opencontainers.image.title="Spillway" \
      org.opencontainers.image.description="Lend idle GPUs between Kubernetes clusters: broker, agent, virtual-node shim, spillctl" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /src/package.json ./
COPY --from=deps /src/node_modules ./node_modules
# packages/api loads the .proto files from /app/proto at run time.
COPY --from=build /src/proto ./proto
COPY --from=build /src/packages/common/package.json packages/common/
COPY --from=build /src/packages/common/dist packages/common/dist
COPY --from=build /src/packages/api/package.json packages/api/
COPY --from=build /src/packages/api/dist packages/api/dist
COPY --from=build /src/packages/broker/package.json packages/broker/
COPY --from=build /src/packages/broker/dist packages/broker/dist
# The dashboard's HTML, CSS and icon (its compiled modules are in dist/page).
COPY --from=build /src/packages/broker/page/static packages/broker/page/static
COPY --from=build /src/packages/agent/package.json packages/agent/
COPY --from=build /src/packages/agent/dist packages/agent/dist
COPY --from=build /src/packages/virtual-node/package.json packages/virtual-node/
COPY --from=build /src/packages/virtual-node/dist packages/virtual-node/dist
COPY --from=build /src/packages/cli/package.json packages/cli/
COPY --from=build /src/packages/cli/dist packages/cli/dist
# The entry points the Helm charts run (command: [spillway-broker] and so on).
RUN set -eu; \
    for entry in broker:spillway-broker agent:spillway-agent virtual-node:spillway-virtual-node cli:spillctl; do \
      pkg="${entry%%:*}"; name="${entry#*:}"; main="/app/packages/$pkg/dist/main.js"; \
      test -f "$main" || { echo "missing $main" >&2; exit 1; }; \
      printf '#!/bin/sh\nexec node %s "$@"\n' "$main" > "/usr/local/bin/$name"; \
      chmod 0755 "/usr/local/bin/$name"; \
    done
# Not root; the same IDs as the charts' securityContext. Nothing writes outside mounted volumes.
USER 10001:10001
EXPOSE 7443 8080 10250
CMD ["spillway-broker", "--help"]

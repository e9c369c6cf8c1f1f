# syntax=docker/dockerfile:1
# Consent Ledger: multi-stage build. The runtime image holds production dependencies and the
# compiled service only, runs as the unprivileged `node` user, applies pending migrations at
# start (RUN_MIGRATIONS=true by default) and then serves gRPC on port 50051.

ARG NODE_IMAGE=node:20-bookworm-slim

# better-sqlite3 compiles its native addon from source when no prebuilt binary can be fetched.
FROM ${NODE_IMAGE} AS toolchain
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app

FROM toolchain AS build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json buf.yaml buf.gen.yaml ./
COPY protos ./protos
COPY src ./src
COPY migrations ./migrations
RUN npm run build

FROM toolchain AS prod-deps
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
# HEALTH_PORT: grpc.health.v1 alone, plaintext, for Docker's HEALTHCHECK and Kubernetes gRPC
# probes (the API port demands credentials). METRICS_PORT: Prometheus /metrics (no personal
# data; let only the scraper reach it). docs/operations.md has both.
ENV NODE_ENV=production \
    PORT=50051 \
    BIND_ADDRESS=0.0.0.0 \
    HEALTH_PORT=50052 \
    HEALTH_BIND_ADDRESS=0.0.0.0 \
    METRICS_PORT=9464 \
    METRICS_BIND_ADDRESS=0.0.0.0 \
    DATA_DIR=/app/data
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
RUN mkdir -p /app/data && chown node:node /app/data
USER node
VOLUME ["/app/data"]
EXPOSE 50051 50052 9464
# Healthy while the server reports SERVING: started (NOT_SERVING while it migrates: the start
# period covers that), its databases answer, and it is not draining.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["node", "dist/src/main.js", "health"]
# Configure DATABASE_URL (mysql://...) and ROOT_KEYS_FILE (a mounted secret) for production;
# without them the service uses SQLite and a generated development root key in /app/data.
# It listens on 0.0.0.0, so it refuses to start until callers must authenticate: mount the
# certificates and key sets and set TLS_CERT_FILE, TLS_KEY_FILE and TLS_CLIENT_CA_FILE with
# MTLS_PRINCIPALS_FILE, and/or JWT_JWKS_FILE (docs/security.md). For a throwaway local trial
# only, ALLOW_UNAUTHENTICATED_NON_LOOPBACK=true exposes the development principal.
# Several replicas on a MariaDB Galera cluster: docs/scaling.md, docs/deploy/compose.galera.yaml
# (set DATABASE_CALL_TIMEOUT_MS longer than the cluster's evs.suspect_timeout there).
# The web console (docs/console.md) is off unless CONSOLE_PORT is set; in a container set
# CONSOLE_PORT=8080, CONSOLE_BIND_ADDRESS=0.0.0.0 and CONSOLE_SIGN_IN=proxy behind the
# organisation's auth proxy, and publish that port. Its templates and stylesheet are in dist/
# (npm run build copies them), htmx in node_modules: nothing is fetched at run time.
# The privacy center (docs/privacy-center.md) likewise: PRIVACY_CENTER_PORT=8081,
# PRIVACY_CENTER_BIND_ADDRESS=0.0.0.0, PRIVACY_CENTER_API_TOKEN_FILE (a mounted token with role
# self_service) and PRIVACY_CENTER_PUBLIC_URL (its https address behind the TLS proxy).
# The e-mail confirmations are mailed by the service itself when SMTP_URL is set (smtp:// with
# STARTTLS required, or smtps://), with SMTP_FROM, and SMTP_USER + SMTP_PASSWORD_FILE (mount the
# password as a file, e.g. a Docker secret; SMTP_PASSWORD is refused) (docs/privacy-center.md).
# The heap cap is the one of `npm start` (package.json): V8 collects lazily below its default
# limit (a quarter of the machine's memory), and a server cycling a full decision cache grew to
# ~750 MiB resident without it (docs/benchmarks.md); live data stays far below 384 MB.
CMD ["node", "--max-old-space-size=384", "dist/src/main.js"]

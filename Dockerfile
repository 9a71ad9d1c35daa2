# syntax=docker/dockerfile:1
# polyv-token-broker image: `docker build -t polyv-token-broker .`
# One image for every role (BROKER_ROLE=all|api|worker) and for the PolyV simulator (command `sim`).
# Configuration comes from the environment at run time (README "Configuration"); the image holds no secret.
# REDIS_URL must be set: the image has no redis-server for the embedded fallback.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---------------------------------------------------------------- build: compile TypeScript to dist/
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY client/package.json ./client/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY client/tsconfig.json client/tsconfig.build.json client/tsconfig.cjs.json ./client/
COPY client/src ./client/src
COPY src ./src
RUN npm run build

# ---------------------------------------------------------------- runtime: production dependencies + dist/
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY client/package.json ./client/
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/client/dist ./client/dist
# Files stay owned by root: the node user can read them but not change them.
USER node
EXPOSE 8080
# No curl in slim images: node itself asks /healthz (liveness; /readyz also checks Redis and the worker).
# (No --start-period: dockerfilelint rejects the option; three 15-s tries give start-up 45 s, and compose sets
# its own start_period.)
HEALTHCHECK --interval=15s --timeout=5s --retries=3 \
  CMD ["node","-e","fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form with node as PID 1's child (compose `init: true`): SIGTERM reaches the broker's graceful shutdown.
CMD ["node","dist/src/cli/bin.js","serve"]

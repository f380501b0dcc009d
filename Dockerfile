# One image for every OpenLedger process; docker-compose picks the command per service.
# Every process runs its TypeScript source through tsx and the chain/deploy jobs use Hardhat, so the
# image installs the devDependencies explicitly (`--include=dev`; NODE_ENV=production alone would
# leave out tsx and hardhat and every command would fail). scripts/dockerfile-replay.test.ts replays
# these steps with this ENV in a fresh copy of the tree and starts each compose service's command.
FROM node:20-bookworm-slim AS base
WORKDIR /app
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PRISMA_SCHEMA_ENGINE_BINARY=/bin/true \
    HARDHAT_DISABLE_TELEMETRY_PROMPT=true \
    OPENLEDGER_HOME=/data/cli

# Build stage: `npm ci` compiles the native addons (packages/suffix-native: SA-IS; packages/decode-native:
# the batch-1 int8c decode step; node-gyp against the image's Node headers), which need python3, make and
# g++; they stay in this stage only. (Without them the install still succeeds: attribution falls back to
# the TypeScript SA-IS, ~0.3x the speed, and model-runtime runs every decode step in onnxruntime.)
FROM base AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json .npmrc ./
COPY apps ./apps
COPY packages ./packages
COPY contracts ./contracts
COPY bench ./bench
COPY prisma ./prisma
COPY prisma.config.ts tsconfig.base.json tsconfig.json ./
COPY scripts ./scripts
# The default base model (pretrained by scripts/pretrain-base.ts; ~9 MB).
COPY models ./models
RUN npm ci --include=dev --no-audit --no-fund && node scripts/prepare.mjs

# Runtime stage: the built tree (with the compiled addon), without the compiler.
FROM base
COPY --from=build /app /app
# What must survive a restart lives under /data: named volumes in docker-compose.yml.
EXPOSE 4001 4002 4003 4004 4005 8545
CMD ["node", "--import", "tsx", "apps/gateway/src/server.ts"]

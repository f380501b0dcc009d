# One image for every OpenLedger process; docker-compose picks the command per service.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PRISMA_SCHEMA_ENGINE_BINARY=/bin/true \
    HARDHAT_DISABLE_TELEMETRY_PROMPT=true
COPY package.json package-lock.json .npmrc ./
COPY apps ./apps
COPY packages ./packages
COPY contracts ./contracts
COPY bench ./bench
COPY prisma ./prisma
COPY prisma.config.ts tsconfig.base.json tsconfig.json ./
COPY scripts ./scripts
RUN npm ci --no-audit --no-fund && node scripts/prepare.mjs
EXPOSE 4001 4002 4003 4004 4005 8545
CMD ["node", "--import", "tsx", "apps/gateway/src/server.ts"]

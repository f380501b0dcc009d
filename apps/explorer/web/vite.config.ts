import path from "node:path";
import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const here = path.dirname(fileURLToPath(import.meta.url));

// `npm run build -w @openledger/explorer` writes apps/explorer/dist, which the explorer's Fastify
// server serves; `npm run dev -w @openledger/explorer` serves the pages with hot reload and sends
// /api to a running explorer (EXPLORER_URL, default http://127.0.0.1:4005).
export default defineConfig({
  root: here,
  plugins: [react()],
  build: {
    outDir: path.join(here, "..", "dist"),
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
  },
  server: {
    proxy: { "/api": process.env.EXPLORER_URL ?? "http://127.0.0.1:4005" },
  },
});

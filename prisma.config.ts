// Prisma CLI configuration (Prisma 7 reads the datasource URL from here, not the schema).
// The services never read this file; they get DATABASE_URL through @openledger/config.
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: {
    url: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/openledger",
  },
});

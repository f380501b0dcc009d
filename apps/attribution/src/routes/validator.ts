import { readValidatorQuorum } from "@openledger/chain";
import type { FastifyPluginAsync } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { meetsValidatorStake, verifyingContract } from "../lib/validator.ts";
import { ErrorBody } from "./schemas.ts";

export const ValidatorRoute = {
  tags: ["validators"],
  summary: "Who this validator process is, and the quorum it counts towards",
  description:
    "The validator key this process signs with (its address only; one key per process outside a local dev " +
    "chain), whether it holds the minimum Validator stake and is in the distributor's active set, this " +
    "process's id, and the distributor's quorum now: `need` signatures of the `active` validators " +
    "(numerator/denominator of the active set, at least minSignatures). 503 CHAIN_UNAVAILABLE: no chain.",
  response: {
    200: z.object({
      pid: z.number().int().describe("This process's id"),
      adapterSource: z
        .string()
        .describe(
          "Where this validator gets fine-tuned adapters' files for LoRA influence (ATTRIBUTION_ADAPTER_SOURCE): " +
            "'dir' (the gateway's store on a shared disk) or the gateway's URL (fetched, signed, hash-checked; " +
            "several replicas: comma-separated, tried in order)",
        ),
      validators: z.array(
        z.object({
          address: z.string(),
          staked: z.boolean().describe("Staking.meetsMinimum(address, Validator, 0x0)"),
          active: z.boolean().describe("In RewardDistributor.activeValidators()"),
        }),
      ),
      quorum: z.object({
        numerator: z.number().int(),
        denominator: z.number().int(),
        minSignatures: z.number().int(),
        need: z.number().int().describe("Signatures a result or a root needs now"),
        active: z.array(z.string()).describe("The active validators (lower-case)"),
      }),
    }),
    503: ErrorBody,
  },
};

export const validatorRoutes: FastifyPluginAsync = async (root) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  app.get("/v1/validator", { schema: ValidatorRoute }, async () => {
    const chain = await app.chain.require();
    const [identities, quorum] = await Promise.all([
      app.attribution.validators(),
      readValidatorQuorum(chain.publicClient, verifyingContract(chain)),
    ]);
    return {
      pid: process.pid,
      adapterSource: app.attribution.config.ATTRIBUTION_ADAPTER_SOURCE,
      validators: await Promise.all(
        identities.map(async (v) => ({
          address: v.address,
          staked: await meetsValidatorStake(chain, v.address),
          active: quorum.active.has(v.address),
        })),
      ),
      quorum: { ...quorum, active: [...quorum.active].sort() },
    };
  });
};

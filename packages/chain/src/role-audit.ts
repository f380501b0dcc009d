import { type Abi, type Address, getAddress, type Hex, keccak256, toBytes, zeroAddress } from "viem";
import type { ChainPublicClient } from "./clients.ts";
import { CONTRACT_NAMES, type ContractName } from "./contract-names.ts";
import type { PlatformAddresses } from "./deploy.ts";
import { contractAbis, openGovernorAbi, rewardDistributorAbi } from "./generated/abis.ts";
import { DEFAULT_ADMIN_ROLE, ROLE_CATALOG, type RolePower } from "./roles.ts";

export type HolderKind = "timelock" | "governor" | "contract" | "guardian" | "eoa";

/** One (contract, role, holder) of a deployed platform, as `npm run roles -- --json` prints it. */
export interface RoleHolder {
  contract: ContractName;
  role: string;
  holder: Address;
  holderKind: HolderKind;
}

/** The contracts with AccessControl roles: all but the token (none), the governor (its own powers) and
 *  ValidatorDisputes (no roles: it holds one, Staking's SLASH_PROPOSER_ROLE). */
export const ACCESS_CONTROLLED_CONTRACTS = CONTRACT_NAMES.filter(
  (n): n is Exclude<ContractName, "OpenToken" | "OpenGovernor" | "ValidatorDisputes"> =>
    n !== "OpenToken" && n !== "OpenGovernor" && n !== "ValidatorDisputes",
);

/** Blocks per eth_getLogs request (public RPCs cap ranges; a local node does not care). */
const LOG_RANGE = 10_000n;

interface Decoded {
  eventName: string;
  args: Record<string, unknown>;
  blockNumber: bigint;
  logIndex: number;
}

async function eventsOf(
  publicClient: ChainPublicClient,
  address: Address,
  abi: Abi,
  fromBlock: bigint,
): Promise<Decoded[]> {
  const latest = await publicClient.getBlockNumber();
  const out: Decoded[] = [];
  for (let from = fromBlock; from <= latest; from += LOG_RANGE) {
    const to = from + LOG_RANGE - 1n < latest ? from + LOG_RANGE - 1n : latest;
    const logs = (await publicClient.getContractEvents({
      address,
      abi,
      fromBlock: from,
      toBlock: to,
    })) as unknown as Decoded[];
    out.push(...logs);
  }
  // Replay order: the chain's.
  return out.sort((a, b) =>
    a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1,
  );
}

/** Apply add/remove events in order; returns the final holders. */
function replay(events: Decoded[], add: string, remove: string, key: (e: Decoded) => [string, Address]) {
  const holders = new Map<string, Set<Address>>();
  for (const e of events) {
    if (e.eventName !== add && e.eventName !== remove) continue;
    const [role, who] = key(e);
    const set = holders.get(role) ?? new Set<Address>();
    holders.set(role, set);
    if (e.eventName === add) set.add(getAddress(who));
    else set.delete(getAddress(who));
  }
  return holders;
}

function roleName(contract: ContractName, roleId: Hex): string {
  if (roleId.toLowerCase() === DEFAULT_ADMIN_ROLE) return "DEFAULT_ADMIN_ROLE";
  for (const name of Object.keys(ROLE_CATALOG[contract])) {
    if (keccak256(toBytes(name)).toLowerCase() === roleId.toLowerCase()) return name;
  }
  return roleId; // a role id no catalog entry names: printed raw, and the audit test fails on it
}

/**
 * Every (contract, role, holder) of a deployed platform, derived from the chain's own events — RoleGranted /
 * RoleRevoked of every AccessControl contract, the distributor's ValidatorAdded / ValidatorRemoved, the
 * governor's ProposalGuardianSet / TimelockChange — replayed in order from the deployment block, then
 * cross-checked against the contracts' current state (hasRole, isValidator, proposalGuardian, timelock).
 */
export async function auditRoles(
  publicClient: ChainPublicClient,
  addresses: PlatformAddresses,
): Promise<RoleHolder[]> {
  const c = addresses.contracts;
  const fromBlock = BigInt(addresses.deployedAtBlock);
  const timelock = getAddress(c.OpenTimelock);
  const governor = getAddress(c.OpenGovernor);
  const guardian = getAddress(
    await publicClient.readContract({
      address: governor,
      abi: openGovernorAbi,
      functionName: "proposalGuardian",
    }),
  );
  const kinds = new Map<Address, HolderKind>();
  const kindOf = async (holder: Address): Promise<HolderKind> => {
    let kind = kinds.get(holder);
    if (!kind) {
      if (holder === timelock) kind = "timelock";
      else if (holder === governor) kind = "governor";
      else if (holder === guardian) kind = "guardian";
      else {
        const code = await publicClient.getCode({ address: holder });
        kind = code && code !== "0x" ? "contract" : "eoa";
      }
      kinds.set(holder, kind);
    }
    return kind;
  };

  const found: { contract: ContractName; role: string; holder: Address }[] = [];
  for (const contract of ACCESS_CONTROLLED_CONTRACTS) {
    const abi = contractAbis[contract] as Abi;
    const events = await eventsOf(publicClient, c[contract], abi, fromBlock);
    const holders = replay(events, "RoleGranted", "RoleRevoked", (e) => [
      e.args.role as Hex,
      e.args.account as Address,
    ]);
    for (const [roleId, set] of holders) {
      for (const holder of set) {
        const ok = await publicClient.readContract({
          address: c[contract],
          abi,
          functionName: "hasRole",
          args: [roleId, holder],
        } as never);
        if (ok !== true)
          throw new Error(`${contract}: events say ${holder} holds ${roleId}, hasRole says no`);
        found.push({ contract, role: roleName(contract, roleId as Hex), holder });
      }
    }
    if (contract === "RewardDistributor") {
      const validators = replay(events, "ValidatorAdded", "ValidatorRemoved", (e) => [
        "VALIDATOR",
        e.args.validator as Address,
      ]);
      const onChain = new Set(
        (
          await publicClient.readContract({
            address: c.RewardDistributor,
            abi: rewardDistributorAbi,
            functionName: "validators",
          })
        ).map((a) => getAddress(a)),
      );
      for (const v of validators.get("VALIDATOR") ?? []) {
        if (!onChain.has(v))
          throw new Error(`RewardDistributor: events say ${v} is a validator, validators() does not`);
        found.push({ contract, role: "VALIDATOR", holder: v });
      }
    }
  }

  const governorEvents = await eventsOf(publicClient, governor, openGovernorAbi as Abi, fromBlock);
  // ProposalGuardianSet replaces the guardian: the last one holds it.
  const lastGuardianEvent = governorEvents.filter((e) => e.eventName === "ProposalGuardianSet").at(-1);
  const lastGuardian = lastGuardianEvent
    ? getAddress(lastGuardianEvent.args.newProposalGuardian as Address)
    : undefined;
  const lastTimelock = governorEvents.filter((e) => e.eventName === "TimelockChange").at(-1);
  const executor = lastTimelock ? getAddress(lastTimelock.args.newTimelock as Address) : undefined;
  const onChainTimelock = getAddress(
    await publicClient.readContract({ address: governor, abi: openGovernorAbi, functionName: "timelock" }),
  );
  if (executor !== onChainTimelock)
    throw new Error(`OpenGovernor: events say executor ${executor}, timelock() ${onChainTimelock}`);
  found.push({ contract: "OpenGovernor", role: "GOVERNANCE", holder: executor });
  if (lastGuardian && lastGuardian !== zeroAddress) {
    if (lastGuardian !== guardian)
      throw new Error(`OpenGovernor: events say guardian ${lastGuardian}, proposalGuardian() ${guardian}`);
    found.push({ contract: "OpenGovernor", role: "PROPOSAL_GUARDIAN", holder: lastGuardian });
  }

  const order = (contract: ContractName, role: string) => {
    const r = Object.keys(ROLE_CATALOG[contract]).indexOf(role);
    return CONTRACT_NAMES.indexOf(contract) * 1000 + (r < 0 ? 999 : r);
  };
  found.sort(
    (a, b) =>
      order(a.contract, a.role) - order(b.contract, b.role) ||
      a.holder.toLowerCase().localeCompare(b.holder.toLowerCase()),
  );
  const out: RoleHolder[] = [];
  for (const f of found) out.push({ ...f, holderKind: await kindOf(f.holder) });
  return out;
}

/** The power of a role (ROLE_CATALOG), or undefined for a role the catalog does not know. */
export function rolePower(contract: ContractName, role: string): RolePower | undefined {
  return ROLE_CATALOG[contract][role]?.power;
}

/** Entries that break the production promise: an EOA holding a role that grants roles or moves funds. */
export function eoaViolations(holders: readonly RoleHolder[]): RoleHolder[] {
  return holders.filter((h) => {
    if (h.holderKind !== "eoa") return false;
    const power = rolePower(h.contract, h.role);
    return power === undefined || power === "admin" || power === "moves-funds";
  });
}

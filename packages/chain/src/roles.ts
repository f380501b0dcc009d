import { type Hex, keccak256, toBytes } from "viem";
import type { ContractName } from "./contract-names.ts";

/** AccessControl role ids, identical to the contracts' `keccak256("<NAME>")` constants. */
export const DEFAULT_ADMIN_ROLE: Hex = `0x${"00".repeat(32)}`;
export const SLASHER_ROLE = keccak256(toBytes("SLASHER_ROLE"));
export const SLASH_PROPOSER_ROLE = keccak256(toBytes("SLASH_PROPOSER_ROLE"));
export const PUBLISHER_ROLE = keccak256(toBytes("PUBLISHER_ROLE"));
export const REGISTRAR_ROLE = keccak256(toBytes("REGISTRAR_ROLE"));
export const SETTLER_ROLE = keccak256(toBytes("SETTLER_ROLE"));
export const DISTRIBUTOR_ROLE = keccak256(toBytes("DISTRIBUTOR_ROLE"));
export const GUARDIAN_ROLE = keccak256(toBytes("GUARDIAN_ROLE"));
/** OpenZeppelin TimelockController roles. */
export const PROPOSER_ROLE = keccak256(toBytes("PROPOSER_ROLE"));
export const EXECUTOR_ROLE = keccak256(toBytes("EXECUTOR_ROLE"));
export const CANCELLER_ROLE = keccak256(toBytes("CANCELLER_ROLE"));

/** Staking.StakeRole (uint8 in the ABI). */
export const StakeRole = { Contributor: 0, Validator: 1, ModelPublisher: 2 } as const;
export type StakeRole = (typeof StakeRole)[keyof typeof StakeRole];

/** ModelRegistry.ModelKind (uint8 in the ABI). */
export const ModelKind = { Model: 0, Adapter: 1 } as const;
export type ModelKind = (typeof ModelKind)[keyof typeof ModelKind];

/** Governor ProposalState (uint8 in the ABI), as OpenZeppelin's IGovernor numbers it. */
export const ProposalState = {
  Pending: 0,
  Active: 1,
  Canceled: 2,
  Defeated: 3,
  Succeeded: 4,
  Queued: 5,
  Expired: 6,
  Executed: 7,
} as const;

/** The Staking subject for a datanet / model id (uint256 id as bytes32); validators use ZERO_SUBJECT. */
export const ZERO_SUBJECT: Hex = `0x${"00".repeat(32)}`;
export function subjectOf(id: bigint): Hex {
  return `0x${id.toString(16).padStart(64, "0")}`;
}

export const OPEN = 10n ** 18n;

/**
 * What holding a role lets its holder do, by the worst case:
 * - `admin`: grants roles or changes parameters (so, indirectly, anything below);
 * - `moves-funds`: sends tokens on its own authority;
 * - `bounded-funds`: moves tokens only within bounds others set (consumers' caps, a dispute window with a
 *   veto, a validator quorum with an activation delay);
 * - `protective`: only stops something (pause, revoke or veto a pending action, cancel a proposal);
 * - `operational`: bookkeeping that moves no tokens (registries, executing already-approved operations).
 *
 * The production profile's promise, checked by `npm run roles` and contracts/test/governance-roles.test.ts:
 * no externally owned account holds an `admin` or `moves-funds` role.
 */
export type RolePower = "admin" | "moves-funds" | "bounded-funds" | "protective" | "operational";

export interface RoleInfo {
  power: RolePower;
  /** What the holder can do. */
  can: string;
  /** What limits it on chain. */
  bound: string;
}

/**
 * Every role of every contract (and the two non-AccessControl powers: the governor's executor and proposal
 * guardian, and the distributor's validator set). ARCHITECTURE.md's "Who can move money" table is this list.
 */
export const ROLE_CATALOG: Record<ContractName, Record<string, RoleInfo>> = {
  OpenToken: {},
  ValidatorDisputes: {},
  OpenTimelock: {
    DEFAULT_ADMIN_ROLE: {
      power: "admin",
      can: "grant and revoke the timelock's own roles, change its delay",
      bound: "only through its own scheduled operations; delay never below minDelayFloor",
    },
    PROPOSER_ROLE: {
      power: "admin",
      can: "schedule any call as the timelock (which holds every admin role)",
      bound: "runs only after the timelock delay; a proposal needs a vote of OPEN holders",
    },
    EXECUTOR_ROLE: {
      power: "operational",
      can: "execute operations whose delay has passed",
      bound: "cannot create operations",
    },
    CANCELLER_ROLE: {
      power: "protective",
      can: "cancel a scheduled operation",
      bound: "stops things only",
    },
  },
  OpenGovernor: {
    GOVERNANCE: {
      power: "admin",
      can: "change voting delay/period, proposal threshold, quorum, deposit, guardian, timelock",
      bound: "only by an executed proposal; voting period and quorum have floors",
    },
    PROPOSAL_GUARDIAN: {
      power: "protective",
      can: "cancel a live proposal (its deposit goes to the treasury)",
      bound: "cannot propose, vote, execute or move anything",
    },
  },
  Staking: {
    DEFAULT_ADMIN_ROLE: {
      power: "admin",
      can: "grant roles; set minimum stakes, unbonding period, treasury, reporter cut, slash dispute window and bound",
      bound: "unbonding <= 365 d, reporter cut <= 50 %, dispute window >= minSlashDisputeWindow",
    },
    SLASHER_ROLE: {
      power: "moves-funds",
      can: "slash any position at once (to the treasury, a reporter cut <= 50 %)",
      bound: "the position's stake; held by nobody in production",
    },
    SLASH_PROPOSER_ROLE: {
      power: "bounded-funds",
      can:
        "propose slashing a position (held by the operator and by ValidatorDisputes, which files a validator's " +
        "only with a quorum of the other active validators' signed dispute and the validator's signature over " +
        "the disputed result)",
      bound:
        "<= maxSlashBps of the position; executes only after the dispute window; guardian or governance veto",
    },
    GUARDIAN_ROLE: {
      power: "protective",
      can: "veto a pending slash proposal",
      bound: "stops things only",
    },
  },
  DatanetRegistry: {
    DEFAULT_ADMIN_ROLE: { power: "admin", can: "grant and revoke PUBLISHER_ROLE", bound: "none on chain" },
    PUBLISHER_ROLE: {
      power: "operational",
      can: "create datanets for users, publish versions and metadata of any datanet",
      bound: "moves no tokens; versions are immutable once published",
    },
  },
  ModelRegistry: {
    DEFAULT_ADMIN_ROLE: {
      power: "admin",
      can: "grant and revoke REGISTRAR_ROLE, retire any model",
      bound: "none on chain",
    },
    REGISTRAR_ROLE: {
      power: "operational",
      can: "register models for their owners",
      bound: "moves no tokens; a content hash registers once",
    },
  },
  InferenceEscrow: {
    DEFAULT_ADMIN_ROLE: {
      power: "admin",
      can: "grant roles; set the withdrawal delay and the default daily cap; unpause",
      bound: "withdrawal delay <= 30 d; default daily cap <= maxDefaultDailyCap",
    },
    SETTLER_ROLE: {
      power: "bounded-funds",
      can: "charge consumers' settled fees into the escrow's settled pool",
      bound:
        "per consumer per UTC day <= its daily cap (its own, or the default <= maxDefaultDailyCap); the pool pays out only through a validator-quorum root",
    },
    DISTRIBUTOR_ROLE: {
      power: "moves-funds",
      can: "draw charged fees for an epoch, give back a revoked epoch's draw",
      bound: "<= fees charged and not yet drawn; held by the RewardDistributor contract",
    },
    GUARDIAN_ROLE: { power: "protective", can: "pause charging", bound: "stops things only" },
  },
  RewardDistributor: {
    DEFAULT_ADMIN_ROLE: {
      power: "admin",
      can: "admit and remove validators; set quorum fraction, activation delay, fee split; grant roles; unpause",
      bound:
        "quorum >= 2/3 of active validators; activation delay >= minActivationDelay; treasury <= 25 %, contributors >= 25 % of each fee",
    },
    GUARDIAN_ROLE: {
      power: "protective",
      can: "pause posting and claims; revoke the latest root while it is pending",
      bound: "stops things only; a revoked root's draw goes back to the escrow",
    },
    VALIDATOR: {
      power: "bounded-funds",
      can: "sign epoch roots of cumulative earnings",
      bound:
        "a root needs >= 2/3 of the active staked validators; its total <= what the escrow charged; claimable only after the activation delay, revocable until then",
    },
  },
};

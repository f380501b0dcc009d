/** The production contracts of contracts/, in deployment order. Test mocks are deliberately not listed. */
export const CONTRACT_NAMES = [
  "OpenToken",
  "OpenTimelock",
  "Staking",
  "DatanetRegistry",
  "ModelRegistry",
  "InferenceEscrow",
  "RewardDistributor",
  "ValidatorDisputes",
  "OpenGovernor",
] as const;

export type ContractName = (typeof CONTRACT_NAMES)[number];
